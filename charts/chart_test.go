// Package charts tests the Helm chart with the Helm SDK, as `helm lint` and
// `helm install --dry-run` would, and keeps it in sync with config/.
package charts

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// render installs the chart client-side (no cluster) and returns every object.
func render(t *testing.T, values map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	ch, err := loader.Load("velvetrope")
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRun, install.ClientOnly = true, true
	install.ReleaseName, install.Namespace = "vr", "velvetrope-system"
	install.KubeVersion = &chartutil.KubeVersion{Version: "v1.37.0", Major: "1", Minor: "37"}
	rel, err := install.Run(ch, values)
	if err != nil {
		return nil, err
	}
	return parse(t, rel.Manifest), nil
}

// parse returns every object of a release's manifest.
func parse(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var o map[string]any
		if err := dec.Decode(&o); err != nil {
			break
		}
		if len(o) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: o}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			t.Fatalf("an object without kind or apiVersion: %v", o)
		}
		objs = append(objs, u)
	}
	return objs
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind string, into any) bool {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			if into != nil {
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
					t.Fatalf("%s does not parse as its type: %v", kind, err)
				}
			}
			return true
		}
	}
	return false
}

func TestDefaultRender(t *testing.T) {
	objs, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Deployment", "PodDisruptionBudget", "Service"} {
		if !find(t, objs, kind, nil) {
			t.Errorf("no %s", kind)
		}
	}
	for _, kind := range []string{"ServiceMonitor", "PodMonitor", "NetworkPolicy", "Ingress"} {
		if find(t, objs, kind, nil) {
			t.Errorf("%s rendered though not enabled", kind)
		}
	}

	var d appsv1.Deployment
	find(t, objs, "Deployment", &d)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	switch {
	case *d.Spec.Replicas != 2 || !strings.Contains(strings.Join(c.Args, " "), "--leader-elect=true"):
		t.Error("two replicas with leader election")
	case c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz":
		t.Error("probes")
	case pod.SecurityContext == nil || !*pod.SecurityContext.RunAsNonRoot || !*c.SecurityContext.ReadOnlyRootFilesystem ||
		*c.SecurityContext.AllowPrivilegeEscalation || c.SecurityContext.Capabilities.Drop[0] != "ALL":
		t.Error("securityContext")
	case env(c, "MONGODB_URI") == nil || env(c, "MONGODB_URI").SecretKeyRef == nil || env(c, "MONGODB_URI").SecretKeyRef.Name != "velvetrope-mongodb":
		t.Error("the MongoDB URI must come from the Secret")
	case env(c, "POD_NAME") == nil || env(c, "POD_NAME").FieldRef.FieldPath != "metadata.name" ||
		env(c, "POD_NAMESPACE") == nil || env(c, "POD_NAMESPACE").FieldRef.FieldPath != "metadata.namespace":
		t.Error("the manager needs its Pod's name and namespace to find its own image, which the fleets run")
	case c.Image != "ghcr.io/velvetrope/velvetrope:dev":
		t.Errorf("image %s", c.Image)
	}
	var pdb policyv1.PodDisruptionBudget
	find(t, objs, "PodDisruptionBudget", &pdb)
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("the PDB selects %s=%s, which the pods lack", k, v)
		}
	}

	// RBAC: the generated rules, cluster-wide; leader election namespaced; no wildcards.
	var cr rbacv1.ClusterRole
	find(t, objs, "ClusterRole", &cr)
	var generated rbacv1.ClusterRole
	b, _ := os.ReadFile("../config/rbac/role.yaml")
	if err := yaml.Unmarshal(b, &generated); err != nil {
		t.Fatal(err)
	}
	if len(cr.Rules) == 0 || len(cr.Rules) != len(generated.Rules) {
		t.Errorf("ClusterRole has %d rules, the generated role %d", len(cr.Rules), len(generated.Rules))
	}
	var role rbacv1.Role
	find(t, objs, "Role", &role)
	if role.Namespace != "velvetrope-system" {
		t.Errorf("leader election Role in %q", role.Namespace)
	}
	for _, r := range append(cr.Rules, role.Rules...) {
		for _, s := range append(append(r.Verbs, r.Resources...), r.APIGroups...) {
			if s == "*" {
				t.Errorf("wildcard in RBAC: %+v", r)
			}
		}
	}
}

func TestNonDefaultRender(t *testing.T) {
	objs, err := render(t, map[string]any{
		"image":         map[string]any{"repository": "registry.example.com/vr", "tag": "1.2.3"},
		"manager":       map[string]any{"replicas": 3, "watchNamespaces": []any{"starfall", "moonrise"}},
		"metrics":       map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
		"networkPolicy": map[string]any{"enabled": true},
		"fleet": map[string]any{"trustedProxies": []any{"10.42.0.0/16", "fd00::/64"}, "serviceAccountName": "redeemer",
			"imagePullSecrets": []any{"registry-a", "registry-b"}, "networkPolicy": false, "prescaleHold": "1h"},
		"routes": map[string]any{"hostnames": []any{"play.example.com"},
			"gateway": map[string]any{"enabled": true, "parentRefs": []any{map[string]any{"namespace": "edge", "name": "public", "sectionName": "https"},
				map[string]any{"namespace": "edge", "name": "internal"}}},
			"ingress": map[string]any{"enabled": true, "className": "nginx", "tlsSecretName": "play-tls",
				"annotations": map[string]any{"cert-manager.io/cluster-issuer": "letsencrypt"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	find(t, objs, "Deployment", &d)
	if *d.Spec.Replicas != 3 || d.Spec.Template.Spec.Containers[0].Image != "registry.example.com/vr:1.2.3" {
		t.Error("replicas and image follow the values")
	}
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--fleet-trusted-proxies=10.42.0.0/16,fd00::/64") {
		t.Errorf("the fleets' trusted proxies reach the manager: %v", d.Spec.Template.Spec.Containers[0].Args)
	}
	if !find(t, objs, "ServiceMonitor", nil) || !find(t, objs, "NetworkPolicy", &networkingv1.NetworkPolicy{}) {
		t.Error("ServiceMonitor and NetworkPolicy when enabled")
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--watch-namespaces=starfall,moonrise", "--fleet-service-account=redeemer", "--fleet-image-pull-secrets=registry-a,registry-b", "--fleet-network-policy=false",
		"--prescale-hold=1h", "--route-hostnames=play.example.com", "--route-gateways=edge/public/https,edge/internal", "--route-ingress",
		"--route-ingress-class=nginx", "--route-ingress-tls-secret=play-tls", `--route-ingress-annotations={"cert-manager.io/cluster-issuer":"letsencrypt"}`} {
		if !slices.Contains(args, want) {
			t.Errorf("manager args lack %s: %v", want, args)
		}
	}
	// The one route for unknown codes: the bare prefix, to the manager's
	// fallback port (the operator makes a route per Invitation).
	var ing networkingv1.Ingress
	if !find(t, objs, "Ingress", &ing) || ing.Spec.Rules[0].Host != "play.example.com" || *ing.Spec.IngressClassName != "nginx" ||
		ing.Spec.Rules[0].HTTP.Paths[0].Path != "/invitations" || ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != "vr-fallback" ||
		ing.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" || ing.Spec.TLS[0].SecretName != "play-tls" {
		t.Errorf("unknown-codes Ingress: %+v", ing)
	}
	route := object(objs, "HTTPRoute")
	if route == nil {
		t.Fatal("no unknown-codes HTTPRoute")
	}
	backend, _, _ := unstructured.NestedSlice(route.Object, "spec", "rules")
	parents, _, _ := unstructured.NestedSlice(route.Object, "spec", "parentRefs")
	if len(backend) != 1 || len(parents) != 2 || !strings.Contains(fmt.Sprint(backend), "vr-fallback") || !strings.Contains(fmt.Sprint(parents[0]), "sectionName:https") {
		t.Errorf("unknown-codes HTTPRoute rules %v parents %v", backend, parents)
	}
}

// TestCRD: the CRD is a template (helm upgrade updates it; Helm never
// upgrades a chart's crds/), rendered from the generated one, kept by helm
// uninstall unless crds.keep is false, and left out with crds.install=false.
// TestStaffAPI: the aggregated API is registered, the manager may check its
// callers, and staff get roles to bind.
func TestStaffAPI(t *testing.T) {
	objs, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := object(objs, "APIService")
	if svc == nil || svc.GetName() != "v1alpha1.staff.velvetrope.io" {
		t.Fatalf("APIService %v", svc)
	}
	var names []string
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" || o.GetKind() == "RoleBinding" || o.GetKind() == "ClusterRoleBinding" {
			names = append(names, o.GetKind()+"/"+o.GetName())
		}
	}
	for _, want := range []string{"ClusterRole/velvetrope-staff-redemptions-reader", "ClusterRole/velvetrope-staff-revoker",
		"RoleBinding/vr-staff-auth-reader", "ClusterRoleBinding/vr-staff-auth-delegator"} {
		if !slices.Contains(names, want) {
			t.Errorf("no %s in %v", want, names)
		}
	}
	var d appsv1.Deployment
	find(t, objs, "Deployment", &d)
	if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--staff-bind-address=:8444") {
		t.Errorf("args %v", d.Spec.Template.Spec.Containers[0].Args)
	}
	// kustomize's copy (config/default/staff.yaml) grants and registers the
	// same.
	b, err := os.ReadFile("../config/default/staff.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kustomized := map[string]string{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var o unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &o.Object); err != nil || o.Object == nil {
			continue
		}
		kustomized[o.GetKind()+"/"+strings.TrimPrefix(o.GetName(), "velvetrope-")] = fmt.Sprint(o.Object["rules"], o.Object["roleRef"], o.Object["spec"] != nil)
	}
	for _, o := range objs {
		if k := o.GetKind(); k == "APIService" || k == "ClusterRole" && strings.HasPrefix(o.GetName(), "velvetrope-staff") ||
			strings.HasSuffix(o.GetName(), "staff-auth-reader") || strings.HasSuffix(o.GetName(), "staff-auth-delegator") {
			key := k + "/" + strings.TrimPrefix(strings.TrimPrefix(o.GetName(), "vr-"), "velvetrope-")
			if got, want := kustomized[key], fmt.Sprint(o.Object["rules"], o.Object["roleRef"], o.Object["spec"] != nil); got != want {
				t.Errorf("config/default/staff.yaml %s: %q, the chart %q", key, got, want)
			}
		}
	}
	objs, err = render(t, map[string]any{"staff": map[string]any{"enabled": false}})
	if err != nil {
		t.Fatal(err)
	}
	if object(objs, "APIService") != nil {
		t.Error("staff.enabled=false still registers the APIService")
	}
}

func TestCRD(t *testing.T) {
	ch, err := loader.Load("velvetrope")
	if err != nil {
		t.Fatal(err)
	}
	if crds := ch.CRDObjects(); len(crds) > 0 {
		t.Errorf("%s is under crds/, which helm upgrade never updates: render it from files/ in templates/crds.yaml", crds[0].Filename)
	}
	var generated map[string]any
	b, _ := os.ReadFile("../config/crd/bases/velvetrope.io_invitations.yaml")
	if err := yaml.Unmarshal(b, &generated); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		crds           map[string]any
		rendered, kept bool
	}{
		"default":       {nil, true, true},
		"not kept":      {map[string]any{"keep": false}, true, false},
		"not installed": {map[string]any{"install": false}, false, false},
	} {
		var values map[string]any
		if tc.crds != nil {
			values = map[string]any{"crds": tc.crds}
		}
		objs, err := render(t, values)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		crd := object(objs, "CustomResourceDefinition")
		if (crd != nil) != tc.rendered {
			t.Errorf("%s: CRD rendered %v, want %v", name, crd != nil, tc.rendered)
		}
		if crd == nil {
			continue
		}
		if kept := crd.GetAnnotations()["helm.sh/resource-policy"] == "keep"; kept != tc.kept {
			t.Errorf("%s: helm.sh/resource-policy: keep %v, want %v (annotations %v)", name, kept, tc.kept, crd.GetAnnotations())
		}
		if crd.GetName() != "invitations.velvetrope.io" || !equality.Semantic.DeepEqual(crd.Object["spec"], generated["spec"]) {
			t.Errorf("%s: the rendered CRD %s is not the generated one", name, crd.GetName())
		}
		if crd.GetLabels()["app.kubernetes.io/instance"] != "vr" || crd.GetAnnotations()["controller-gen.kubebuilder.io/version"] == "" {
			t.Errorf("%s: the chart's labels, and the generated annotations: %v %v", name, crd.GetLabels(), crd.GetAnnotations())
		}
	}
}

// TestPodMonitor: off by default (it needs the Prometheus Operator's CRDs);
// when enabled it selects the fleets' pods, which the operator makes in the
// Invitations' namespaces, on their container port named metrics.
func TestPodMonitor(t *testing.T) {
	for name, tc := range map[string]struct {
		podMonitor map[string]any
		matchNames []any
	}{
		"any namespace":   {map[string]any{"enabled": true}, nil},
		"some namespaces": {map[string]any{"enabled": true, "namespaces": []any{"starfall", "moonrise"}, "labels": map[string]any{"release": "prom"}}, []any{"starfall", "moonrise"}},
	} {
		objs, err := render(t, map[string]any{"fleet": map[string]any{"podMonitor": tc.podMonitor}})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pm := object(objs, "PodMonitor")
		if pm == nil {
			t.Fatalf("%s: no PodMonitor", name)
		}
		if pm.GetAPIVersion() != "monitoring.coreos.com/v1" || pm.GetNamespace() != "velvetrope-system" {
			t.Errorf("%s: %s in %q", name, pm.GetAPIVersion(), pm.GetNamespace())
		}
		selector, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
		want := map[string]string{"app.kubernetes.io/name": "velvetrope-redeemer", "app.kubernetes.io/managed-by": "velvetrope-operator"}
		if !maps.Equal(selector, want) {
			t.Errorf("%s: selector %v, want %v", name, selector, want)
		}
		anyNamespace, _, _ := unstructured.NestedBool(pm.Object, "spec", "namespaceSelector", "any")
		matchNames, _, _ := unstructured.NestedSlice(pm.Object, "spec", "namespaceSelector", "matchNames")
		if anyNamespace != (tc.matchNames == nil) || !slices.Equal(matchNames, tc.matchNames) {
			t.Errorf("%s: namespaceSelector any %v, matchNames %v", name, anyNamespace, matchNames)
		}
		endpoints, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
		if len(endpoints) != 1 || !maps.Equal(endpoints[0].(map[string]any), map[string]any{"port": "metrics", "path": "/metrics", "interval": "30s"}) {
			t.Errorf("%s: endpoints %v", name, endpoints)
		}
		if tc.podMonitor["labels"] != nil && pm.GetLabels()["release"] != "prom" {
			t.Errorf("%s: labels %v", name, pm.GetLabels())
		}
	}
}

// TestUpgradeReusingValues: helm upgrade --reuse-values renders the new
// chart with the old release's values in place of its defaults, so values
// added since (crds, fleet.podMonitor) are absent. The CRD must still be
// rendered, kept, or the upgrade would leave it behind unmanaged.
func TestUpgradeReusingValues(t *testing.T) {
	old, err := loader.Load("velvetrope")
	if err != nil {
		t.Fatal(err)
	}
	delete(old.Values, "crds")
	delete(old.Values["fleet"].(map[string]any), "podMonitor")
	delete(old.Values, "monitoring")
	cfg := &action.Configuration{Releases: storage.Init(driver.NewMemory()), KubeClient: &kubefake.PrintingKubeClient{Out: io.Discard},
		Capabilities: chartutil.DefaultCapabilities, Log: func(string, ...any) {}}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace = "vr", "velvetrope-system"
	if _, err := install.Run(old, nil); err != nil {
		t.Fatal(err)
	}
	ch, err := loader.Load("velvetrope")
	if err != nil {
		t.Fatal(err)
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.ReuseValues = "velvetrope-system", true
	rel, err := upgrade.Run("vr", ch, map[string]any{"image": map[string]any{"tag": "2"},
		"monitoring": map[string]any{"prometheusRule": map[string]any{"enabled": true}}})
	if err != nil {
		t.Fatal(err)
	}
	objs := parse(t, rel.Manifest)
	if crd := object(objs, "CustomResourceDefinition"); crd == nil || crd.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
		t.Error("an upgrade reusing values without crds: must render the CRD, kept")
	}
	if object(objs, "PodMonitor") != nil {
		t.Error("an upgrade reusing values without fleet.podMonitor rendered a PodMonitor")
	}
	// monitoring.prometheusRule enabled on a release without the monitoring
	// values: the thresholds fall back to the template's defaults.
	if pr := object(objs, "PrometheusRule"); pr == nil || !strings.Contains(ruleExprs(t, pr)["VelvetRopeServerErrors"], "> 0.05") ||
		ruleFor(t, pr, "VelvetRopeSustained503") != "10m" {
		t.Errorf("an upgrade reusing values without monitoring, enabling the rules: %v", pr)
	}
}

func TestBadValuesFailAtInstall(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"replicas not a number":           {"manager": map[string]any{"replicas": "two"}},
		"unknown value":                   {"replica": 2},
		"CPU target over 100":             {"fleet": map[string]any{"cpuTarget": 101}},
		"duration without unit":           {"fleet": map[string]any{"prescaleWindow": "15"}},
		"a proxy that is no CIDR":         {"fleet": map[string]any{"trustedProxies": []any{"ingress"}}},
		"the old hand-written routes":     {"ingress": map[string]any{"enabled": true, "namespace": "x", "routes": []any{}}},
		"gateway routes without a parent": {"routes": map[string]any{"gateway": map[string]any{"enabled": true}}},
		"hostname that is no hostname":    {"routes": map[string]any{"hostnames": []any{"Play Example"}}},
		"annotation that is no string":    {"routes": map[string]any{"ingress": map[string]any{"annotations": map[string]any{"a": 1}}}},
		"pull secret that is no name":     {"fleet": map[string]any{"imagePullSecrets": []any{"Registry_A"}}},
		"crds.install not a bool":         {"crds": map[string]any{"install": "yes"}},
		"unknown crds value":              {"crds": map[string]any{"upgrade": true}},
		"namespace that is no DNS label":  {"fleet": map[string]any{"podMonitor": map[string]any{"enabled": true, "namespaces": []any{"Star_Fall"}}}},
		"interval without unit":           {"fleet": map[string]any{"podMonitor": map[string]any{"interval": "30"}}},
		"error ratio over 1":              {"monitoring": map[string]any{"prometheusRule": map[string]any{"serverErrorRatio": 5}}},
		"alert duration without unit":     {"monitoring": map[string]any{"prometheusRule": map[string]any{"sustained503For": "10"}}},
		"unknown monitoring value":        {"monitoring": map[string]any{"grafana": map[string]any{"enabled": true}}},
		"dashboard label not a string":    {"monitoring": map[string]any{"dashboard": map[string]any{"labels": map[string]any{"grafana_dashboard": 1}}}},
	} {
		if _, err := render(t, values); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLint(t *testing.T) {
	lint := action.NewLint()
	res := lint.Run([]string{"velvetrope"}, nil)
	for _, m := range res.Messages {
		if m.Severity >= 2 { // support.WarningSev and above
			t.Errorf("lint: %s", m)
		}
	}
	for _, err := range res.Errors {
		t.Errorf("lint: %v", err)
	}
}

// TestChartMatchesConfig: the chart's CRD and RBAC rules are copies of the
// generated ones (make manifests copies them): chart and kustomize agree.
func TestChartMatchesConfig(t *testing.T) {
	for chartFile, source := range map[string]string{
		"velvetrope/files/velvetrope.io_invitations.yaml": "../config/crd/bases/velvetrope.io_invitations.yaml",
		"velvetrope/files/role.yaml":                      "../config/rbac/role.yaml",
	} {
		a, errA := os.ReadFile(chartFile)
		b, errB := os.ReadFile(source)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: run make manifests", chartFile, source)
		}
	}
}

// object returns the first object of kind, or nil.
func object(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

// env returns the source of the container's variable name, or nil.
func env(c corev1.Container, name string) *corev1.EnvVarSource {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom
		}
	}
	return nil
}
