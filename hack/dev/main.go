// Command dev is `make dev`: the whole platform on this machine. It starts
// the FerretDB test bed and the envtest control plane (etcd +
// kube-apiserver) with their data under .dev/, the operator's manager, and —
// since no kubelet can run pods here — a local stand-in that runs redeemer
// processes following the operator's Deployments, behind a small proxy that
// routes /invitations/{code} to the code's campaign as an Ingress would. It
// applies config/samples and prints what to try. Ctrl-C stops everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address of the local ingress")
	dir := flag.String("dir", ".dev", "where the platform keeps its state between runs")
	flag.Parse()
	if err := run(*listen, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func run(listen, dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := testbed.ModuleRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	say := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "dev: "+format+"\n", args...) }

	say("Control plane binaries (built from the Go module proxy on first use: about ten minutes, then cached in bin/)…")
	assets, err := testbed.EnvtestAssets()
	if err != nil {
		return err
	}
	say("MongoDB test bed (data in %s)…", filepath.Join(dir, "ferretdb"))
	mongo, err := testbed.StartMongoIn(filepath.Join(dir, "ferretdb"))
	if err != nil {
		return err
	}
	defer mongo.Stop()

	say("Kubernetes control plane (etcd data in %s)…", filepath.Join(dir, "etcd"))
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		ControlPlane:          envtest.ControlPlane{Etcd: &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")}},
	}
	cfg, err := env.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	user, err := env.AddUser(envtest.User{Name: "dev", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc, err := user.KubeConfig()
	if err == nil {
		err = os.WriteFile(kubeconfig, kc, 0o600)
	}
	if err != nil {
		return err
	}

	say("Building the manager and the redeemer…")
	binDir := filepath.Join(dir, "bin")
	managerBin, err := testbed.Build("./cmd/manager", binDir)
	if err != nil {
		return err
	}
	redeemerBin, err := testbed.Build("./cmd/redeemer", binDir)
	if err != nil {
		return err
	}
	managerLog, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return err
	}
	defer managerLog.Close()
	manager := exec.Command(managerBin, "--health-probe-bind-address", "0", "--metrics-bind-address", "0",
		"--usage-interval", "2s", "--redeemer-image", "velvetrope:dev", "--fleet-min-replicas", "1")
	manager.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "MONGODB_URI="+mongo.URI)
	manager.Stdout, manager.Stderr = managerLog, managerLog
	if err := manager.Start(); err != nil {
		return err
	}
	defer func() { manager.Process.Signal(syscall.SIGTERM); manager.Wait() }()

	kubectl := filepath.Join(assets, "kubectl")
	if out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "-n", "default", "-k", filepath.Join(root, "config", "samples")).CombinedOutput(); err != nil {
		return fmt.Errorf("applying config/samples: %v\n%s", err, out)
	}

	scheme := runtime.NewScheme()
	clientgoscheme.AddToScheme(scheme)
	v1alpha1.AddToScheme(scheme)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	k := &kubelet{client: c, bin: redeemerBin, mongoURI: mongo.URI, mailDir: filepath.Join(dir, "mail"), say: say}
	defer k.stopAll()
	go k.run(ctx)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	proxy := &http.Server{Handler: k, ReadHeaderTimeout: 5 * time.Second}
	go proxy.Serve(ln)
	defer proxy.Close()
	base := "http://" + ln.Addr().String()
	fmt.Printf("{\"msg\":\"Listening\",\"addr\":%q}\n", ln.Addr().String())
	fmt.Printf(`
VelvetRope is running: control plane, operator, MongoDB test bed, and redeemers following the operator's Deployments.

  Redeem:   curl -i -X POST %[1]s/invitations/twitter-reg1 -H 'Content-Type: application/json' -d '{"email":"player@example.com"}'
  Page:     %[1]s/invitations/twitter-reg1   (open it in a browser)
  Watch:    %[2]s --kubeconfig %[3]s get inv -w
  Mail:     %[4]s/*.eml
  Metrics:  %[1]s/metrics   (one redeemer's)
  Logs:     %[5]s

Ctrl-C stops everything; the state stays in %[6]s (make dev-reset wipes it).
`, base, kubectl, kubeconfig, filepath.Join(dir, "mail"), managerLog.Name(), dir)

	<-ctx.Done()
	say("Stopping…")
	return nil
}
