package node

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

// Platform is VelvetRope installed on the node the way users install it:
// the project's image imported into containerd, the MongoDB URI Secret,
// and the Helm chart.
type Platform struct {
	*Node
	Namespace string // the release's
	Release   string
	Image     string // the image reference installed last

	helm *action.Configuration
}

// PlatformOptions configure Install.
type PlatformOptions struct {
	MongoURI string // as the pods reach it (FerretDB on HostIP)
	// Namespaces get the MongoDB Secret (and MailEnv's Secret) the fleets
	// of their Invitations use.
	Namespaces []string
	// MailEnv is the fleets' optional mail Secret (SMTP_HOST, ...).
	MailEnv map[string]string
	// Values are Helm values over the defaults below.
	Values map[string]any
}

// Install builds and imports the project's image, creates the Secrets and
// installs the chart, waiting until the operator's pods are Ready.
func (n *Node) Install(ctx context.Context, opts PlatformOptions) (*Platform, error) {
	p := &Platform{Node: n, Namespace: "velvetrope-system", Release: "velvetrope"}
	ref, err := p.BuildImage("1")
	if err != nil {
		return nil, err
	}
	for _, ns := range append([]string{p.Namespace}, opts.Namespaces...) {
		if err := p.ensureNamespace(ctx, ns); err != nil {
			return nil, err
		}
		if err := p.PutSecret(ctx, ns, "velvetrope-mongodb", map[string]string{"uri": opts.MongoURI}); err != nil {
			return nil, err
		}
		if opts.MailEnv != nil && ns != p.Namespace {
			if err := p.PutSecret(ctx, ns, "velvetrope-mail", opts.MailEnv); err != nil {
				return nil, err
			}
		}
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &n.Kubeconfig, &p.Namespace
	p.helm = new(action.Configuration)
	if err := p.helm.Init(flags, p.Namespace, "secret", func(string, ...any) {}); err != nil {
		return nil, err
	}
	values := merge(map[string]any{
		"image":   map[string]any{"repository": imageRepository, "tag": tagOf(ref), "pullPolicy": "IfNotPresent"},
		"manager": map[string]any{"usageInterval": "2s"},
	}, opts.Values)
	ch, err := p.chart()
	if err != nil {
		return nil, err
	}
	n.log("Installing the Helm chart (image %s)…", ref)
	install := action.NewInstall(p.helm)
	install.ReleaseName, install.Namespace = p.Release, p.Namespace
	install.Wait, install.Timeout = true, 3*time.Minute
	if _, err := install.RunWithContext(ctx, ch, values); err != nil {
		return nil, fmt.Errorf("helm install: %w\n%s", err, p.Describe(ctx, p.Namespace))
	}
	p.Image = ref
	return p, nil
}

// Upgrade runs helm upgrade with values over the installed ones (reusing
// them), waiting for the operator's pods.
func (p *Platform) Upgrade(ctx context.Context, values map[string]any) error {
	ch, err := p.chart()
	if err != nil {
		return err
	}
	up := action.NewUpgrade(p.helm)
	up.Namespace, up.ReuseValues, up.Wait, up.Timeout = p.Namespace, true, true, 3*time.Minute
	rel, err := up.RunWithContext(ctx, p.Release, ch, values)
	if err == nil {
		if image, ok := rel.Config["image"].(map[string]any); ok {
			if tag, ok := image["tag"].(string); ok {
				p.Image = imageRepository + ":" + tag
			}
		}
	}
	return err
}

// Helm is the Helm SDK configuration of the release, for other actions.
func (p *Platform) Helm() *action.Configuration { return p.helm }

func (p *Platform) chart() (*chart.Chart, error) {
	root, err := testbed.ModuleRoot()
	if err != nil {
		return nil, err
	}
	return loader.Load(filepath.Join(root, "charts", "velvetrope"))
}

const imageRepository = "velvetrope.local/velvetrope"

// BuildImage builds the project's image as velvetrope.local/velvetrope:tag
// and imports it into the node.
func (p *Platform) BuildImage(tag string) (string, error) {
	ref := imageRepository + ":" + tag
	tar := filepath.Join(RunDir, "image-"+tag+".tar")
	p.log("Building the project's image %s (no Docker: static binaries in one layer)…", ref)
	if err := ProjectImage(ref).Build(tar); err != nil {
		return "", err
	}
	defer os.Remove(tar)
	return ref, p.ImportImage(tar)
}

func tagOf(ref string) string { return ref[len(imageRepository)+1:] }

func (p *Platform) ensureNamespace(ctx context.Context, name string) error {
	_, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// PutSecret creates or replaces a Secret in ns.
func (p *Platform) PutSecret(ctx context.Context, ns, name string, data map[string]string) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	_, err := p.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = p.Client.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	}
	return err
}

// KubectlCmd runs the node's kubectl as the admin.
func (n *Node) KubectlCmd(args ...string) *exec.Cmd {
	return exec.Command(n.Kubectl, append([]string{"--kubeconfig", n.Kubeconfig}, args...)...)
}

// Describe returns what a person would look at when something does not come
// up: the pods of ns, its Services' endpoints and the latest events, for
// failure messages.
func (n *Node) Describe(ctx context.Context, ns string) string {
	out, _ := n.KubectlCmd("get", "pods,deploy,svc,hpa,pdb", "-n", ns, "-o", "wide").CombinedOutput()
	// Which endpoints each Service had, and whether ready: a Service
	// with none is refused at its ClusterIP ("no route to host").
	eps, _ := n.KubectlCmd("get", "endpointslices", "-n", ns, "-o", `jsonpath={range .items[*]}{.metadata.name}:{range .endpoints[*]} `+
		`{.addresses[0]} ready={.conditions.ready} serving={.conditions.serving} terminating={.conditions.terminating};{end}{"\n"}{end}`).CombinedOutput()
	ev, _ := n.KubectlCmd("get", "events", "-n", ns, "--sort-by", ".lastTimestamp").CombinedOutput()
	if len(ev) > 3000 {
		ev = ev[len(ev)-3000:]
	}
	return string(out) + "\n" + string(eps) + "\n" + string(ev)
}

// OperatorLogs is the tail of the operator's logs (every manager pod), for
// a failing test's message.
func (p *Platform) OperatorLogs() string {
	out, _ := p.KubectlCmd("logs", "-n", p.Namespace, "-l", "app.kubernetes.io/name=velvetrope-operator", "--tail=40", "--prefix", "--all-containers").CombinedOutput()
	return string(out)
}

// merge returns a with b's keys over it, recursively for maps.
func merge(a, b map[string]any) map[string]any {
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := a[k].(map[string]any); ok {
				a[k] = merge(am, bm)
				continue
			}
		}
		a[k] = v
	}
	return a
}

// ServiceURL returns http://<ClusterIP> of a campaign's fleet Service once
// the operator has made it and a request through it reaches a ready
// redeemer (kube-proxy has programmed its endpoints), waiting up to 3
// minutes. The node routes the Service range to its bridge, so the address
// never leaves this machine.
func (p *Platform) ServiceURL(ctx context.Context, ns, campaign string) (string, error) {
	var url string
	client := &http.Client{Timeout: 2 * time.Second}
	err := poll(ctx, 3*time.Minute, "Service velvetrope-"+campaign+" answering", func() (bool, error) {
		svc, err := p.Client.CoreV1().Services(ns).Get(ctx, "velvetrope-"+campaign, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		url = "http://" + svc.Spec.ClusterIP
		resp, err := client.Get(url + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return url, err
}
