package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/velvetrope/velvetrope/controllers"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

func TestCacheHoldsOnlyTheOperatorsObjects(t *testing.T) {
	o := cacheOptions(nil, false)
	if len(o.ByObject) != 6 || o.DefaultNamespaces != nil {
		t.Errorf("six kinds of children, every namespace: %+v", o)
	}
	for obj, by := range o.ByObject {
		if !by.Label.Matches(labels.Set{controllers.LabelManagedBy: "velvetrope-operator"}) || by.Label.Matches(labels.Set{}) {
			t.Errorf("%T: selector %s", obj, by.Label)
		}
	}
	if o := cacheOptions([]string{"starfall", "moonrise"}, true); len(o.DefaultNamespaces) != 2 {
		t.Errorf("--watch-namespaces: %+v", o.DefaultNamespaces)
	}
}

// TestManagerOnAControlPlane runs the manager's options on the envtest
// control plane as the operator's ServiceAccount, with only the RBAC of
// config/rbac: its own image from its Pod, a cache limited to its labelled
// objects in the watched namespaces, and metrics only for the authorised.
func TestManagerOnAControlPlane(t *testing.T) {
	assets, err := testbed.EnvtestAssets()
	if err != nil {
		t.Fatal(err)
	}
	testEnv := &envtest.Environment{BinaryAssetsDirectory: assets}
	admin, err := testEnv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testEnv.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	scheme := newScheme()
	k, err := client.New(admin, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"velvetrope-system", "starfall", "elsewhere"} {
		must(t, k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	applyKustomization(ctx, t, k, "../../config/rbac")
	operator := tokenConfig(ctx, t, admin, "velvetrope-system", "velvetrope-operator")

	// Its own image, from its own Pod (the namespaced get pods rule).
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "velvetrope-operator-0", Namespace: "velvetrope-system"}, Spec: corev1.PodSpec{
		ServiceAccountName: "velvetrope-operator",
		Containers:         []corev1.Container{{Name: "sidecar", Image: "sidecar:1"}, {Name: "manager", Image: "registry.example.com/vr:1.2.3"}},
	}}
	must(t, k.Create(ctx, pod))
	if image, pull, err := ownImage(ctx, operator, "velvetrope-system", "velvetrope-operator-0"); err != nil || image != "registry.example.com/vr:1.2.3" || pull == "" {
		t.Errorf("ownImage = %q %q, %v", image, pull, err)
	}
	if _, _, err := ownImage(ctx, operator, "velvetrope-system", "gone"); err == nil || !strings.Contains(err.Error(), "or set --redeemer-image") {
		t.Errorf("ownImage of a missing Pod: %v", err)
	}

	for _, s := range []struct {
		ns, name string
		labels   map[string]string
	}{
		{"starfall", "velvetrope-twitter", map[string]string{controllers.LabelManagedBy: "velvetrope-operator"}},
		{"starfall", "game-site", nil},
		{"elsewhere", "velvetrope-default", map[string]string{controllers.LabelManagedBy: "velvetrope-operator"}},
	} {
		must(t, k.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: s.ns, Labels: s.labels},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}))
	}

	metricsAddr := freeAddr(t)
	cfg, err := parseConfig([]string{"--mongodb-uri=mongodb://unused", "--redeemer-image=vr:test", "--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=0", "--watch-namespaces=starfall"}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := ctrl.NewManager(operator, managerOptions(cfg, scheme))
	if err != nil {
		t.Fatal(err)
	}
	mgrCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})

	// The cache: only labelled Services, only in the watched namespace.
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("cache not synced")
	}
	var svcs corev1.ServiceList
	must(t, mgr.GetClient().List(ctx, &svcs))
	var names []string
	for _, s := range svcs.Items {
		names = append(names, s.Namespace+"/"+s.Name)
	}
	if !slices.Equal(names, []string{"starfall/velvetrope-twitter"}) {
		t.Errorf("cached Services: %v", names)
	}
	if err := mgr.GetClient().List(ctx, &svcs, client.InNamespace("elsewhere")); err == nil {
		t.Error("a namespace not watched was listed")
	}

	// Metrics: HTTPS, and only for a token allowed GET /metrics
	// (config/rbac's velvetrope-metrics-reader, bound as for Prometheus).
	must(t, k.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-velvetrope"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "velvetrope-metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "elsewhere", Name: "prometheus"}}}))
	prometheus := tokenConfig(ctx, t, admin, "elsewhere", "prometheus").BearerToken
	stranger := tokenConfig(ctx, t, admin, "elsewhere", "stranger").BearerToken
	scrape := func(token string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+metricsAddr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		// Self-signed: the scraper cannot verify it, as in the ServiceMonitor.
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
		for {
			resp, err := c.Do(req)
			if err != nil {
				if ctx.Err() != nil {
					t.Fatalf("metrics: %v", err)
				}
				time.Sleep(100 * time.Millisecond) // not listening yet
				continue
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	if code, _ := scrape(stranger); code != http.StatusForbidden {
		t.Errorf("a token not allowed GET /metrics: %d", code)
	}
	if code, body := scrape(prometheus); code != http.StatusOK || !strings.Contains(body, "rest_client_requests_total") {
		t.Errorf("the metrics reader: %d %.200s", code, body)
	}
}

// applyKustomization creates the resources a kustomization.yaml lists
// (plain files only, as config/rbac has).
func applyKustomization(ctx context.Context, t *testing.T, k client.Client, dir string) {
	t.Helper()
	var kust struct{ Resources []string }
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	must(t, err)
	must(t, yaml.Unmarshal(b, &kust))
	for _, f := range kust.Resources {
		b, err := os.ReadFile(filepath.Join(dir, f))
		must(t, err)
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var o map[string]any
			if err := dec.Decode(&o); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(o) > 0 {
				if err := k.Create(ctx, &unstructured.Unstructured{Object: o}); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			}
		}
	}
}

// tokenConfig creates the ServiceAccount when missing and returns a client
// configuration that authenticates with a token of it.
func tokenConfig(ctx context.Context, t *testing.T, admin *rest.Config, namespace, name string) *rest.Config {
	t.Helper()
	cs, err := kubernetes.NewForConfig(admin)
	must(t, err)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
		_, err = cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
		must(t, err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	must(t, err)
	cfg := rest.AnonymousClientConfig(admin)
	cfg.BearerToken = tr.Status.Token
	return cfg
}

// freeAddr returns a loopback address with a port free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
