package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/loadgen"
)

// routes reads HTTPRoutes and Invitations as typed objects.
func routes(t *testing.T) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, gatewayv1.Install, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	log.SetLogger(logr.Discard())
	c, err := client.New(platform.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// frontDoor is where a Gateway API implementation sends path, reading every
// HTTPRoute as the specification says (the longest matching path prefix,
// then the oldest route), and where an Ingress controller sends it (the
// longest matching Prefix path): "namespace/service:port" of each. No
// Gateway or Ingress controller builds here (docs/operator.md), so this is
// the part of the front door the test can hold the routes to.
func frontDoor(ctx context.Context, c client.Client, path string) (httpRoute, ingress string, err error) {
	matches := func(prefix string) bool {
		prefix = strings.TrimSuffix(prefix, "/")
		return path == prefix || strings.HasPrefix(path, prefix+"/")
	}
	var hrs gatewayv1.HTTPRouteList
	if err := c.List(ctx, &hrs); err != nil {
		return "", "", err
	}
	slices.SortFunc(hrs.Items, func(a, b gatewayv1.HTTPRoute) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	best := -1
	for _, r := range hrs.Items {
		for _, rule := range r.Spec.Rules {
			for _, m := range rule.Matches {
				if m.Path == nil || *m.Path.Type != gatewayv1.PathMatchPathPrefix || !matches(*m.Path.Value) || len(*m.Path.Value) <= best {
					continue
				}
				best = len(*m.Path.Value)
				ref := rule.BackendRefs[0]
				httpRoute = fmt.Sprintf("%s/%s:%d", r.Namespace, ref.Name, *ref.Port)
			}
		}
	}
	var ings networkingv1.IngressList
	if err := c.List(ctx, &ings); err != nil {
		return "", "", err
	}
	best = -1
	for _, ing := range ings.Items {
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if *p.PathType != networkingv1.PathTypePrefix || !matches(p.Path) || len(p.Path) <= best {
					continue
				}
				best = len(p.Path)
				ingress = fmt.Sprintf("%s/%s:%d", ing.Namespace, p.Backend.Service.Name, p.Backend.Service.Port.Number)
			}
		}
	}
	return httpRoute, ingress, nil
}

// serviceAddr is the ClusterIP address of a "namespace/name:port" backend.
func serviceAddr(ctx context.Context, backend string) (string, error) {
	ns, rest, _ := strings.Cut(backend, "/")
	name, port, _ := strings.Cut(rest, ":")
	svc, err := platform.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return "http://" + svc.Spec.ClusterIP + ":" + port, nil
}

// TestNewCodeReachableThroughRoutes applies an Invitation in a new campaign
// and follows its routes, as the front door would, until a player redeems
// through them: within 30 s, with no helm upgrade. An unknown code reaches a
// fleet's documented 404. Deleting the Invitation removes its routes and
// its campaign's fleet (Kubernetes' garbage collector).
func TestNewCodeReachableThroughRoutes(t *testing.T) {
	ctx := context.Background()
	c := routes(t)
	const code, name = "routed-new", "routed"
	start := time.Now()
	// 300 places: every winner's email goes through the test bed's
	// FerretDB, which the later tests share.
	apply(t, code, name, 300)
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			deleteCampaign(t, code, name)
		}
	})
	var through string
	eventually(t, 30*time.Second, "the new code answering through its routes", func() (bool, string) {
		hr, ing, err := frontDoor(ctx, c, "/invitations/"+code)
		if err != nil || hr == "" || hr != ing {
			return false, fmt.Sprintf("HTTPRoute to %q, Ingress to %q, %v", hr, ing, err)
		}
		url, err := serviceAddr(ctx, hr)
		if err != nil {
			return false, err.Error()
		}
		req, _ := http.NewRequest(http.MethodGet, url+"/invitations/"+code, nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		through = hr
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	t.Logf("new code in a new campaign answering through its routes (%s) %v after kubectl apply", through, time.Since(start).Round(100*time.Millisecond))
	if through != "default/velvetrope-"+name+":80" {
		t.Errorf("routed to %s, want the campaign's Service", through)
	}

	// A crowd through the routes, each player from an address of their
	// own behind the trusted proxy: no 429 from a shared bucket. The
	// Invitation's status is written once per usage interval whatever the
	// crowd does.
	url, err := serviceAddr(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	var res loadgen.Result
	const crowd = 15 * time.Second
	writes := countStatusWrites(t, "default", code, func() {
		res = storm(t, url, code, 60, func() { time.Sleep(crowd) })
	})
	audit(t, code, res)
	if res.Statuses[http.StatusTooManyRequests] > 0 || failed(res) > 0 {
		t.Errorf("crowd of distinct players: %s; want no 429 and no failure", res.StatusSummary())
	}
	t.Logf("status writes to the Invitation during a %v crowd of %d requests: %d (usage interval %v)", crowd, len(res.Outcomes), writes, usageInterval)
	if limit := int(crowd/usageInterval) + 4; writes > limit {
		t.Errorf("%d status writes in %v: more than one per usage interval (%d)", writes, crowd, limit)
	}
	// One abusive client, however, has a bucket of its own (per pod: the
	// Service spreads its requests over the fleet's two).
	limited := 0
	for i := range 300 {
		req, _ := http.NewRequest(http.MethodPost, url+"/invitations/"+code, strings.NewReader(fmt.Sprintf(`{"email":"abuser%d@example.com"}`, i)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("request %d of one client: %v\n%s", i, err, platform.Describe(ctx, "default"))
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Error("300 requests from one client within seconds: no 429")
	}

	// An unknown code falls to the chart's one route for the bare prefix:
	// the manager answers it as a fleet does.
	hr, ing, err := frontDoor(ctx, c, "/invitations/no-such-code")
	if err != nil || hr != "velvetrope-system/velvetrope-fallback:80" || ing != hr {
		t.Fatalf("unknown codes: HTTPRoute to %q, Ingress to %q (%v), want the release's fallback Service", hr, ing, err)
	}
	url, err = serviceAddr(ctx, hr)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url + "/invitations/no-such-code")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("unknown code: %s %s %s", resp.Status, resp.Header.Get("Content-Type"), body)
	}

	// Deleting the Invitation: its routes go with it.
	deleteCampaign(t, code, name)
	deleted = true
	for _, obj := range []client.Object{&gatewayv1.HTTPRoute{}, &networkingv1.Ingress{}} {
		eventually(t, 60*time.Second, fmt.Sprintf("%T of the deleted Invitation removed", obj), func() (bool, string) {
			err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "velvetrope-" + code}, obj)
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}
}

// TestFleetUnavailableNamesTheCause applies an Invitation in a namespace
// without the MongoDB Secret: its fleet's pods cannot start, Ready and
// FleetAvailable say why, a Warning event too, and the mail condition says
// there is no mail server. Creating the Secret heals it.
func TestFleetUnavailableNamesTheCause(t *testing.T) {
	ctx := context.Background()
	c := routes(t)
	const ns = "no-secrets"
	if _, err := platform.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		platform.KubectlCmd("delete", "inv", "--all", "-n", ns, "--wait=true", "--timeout=60s").Run()
		platform.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	inv := &v1alpha1.Invitation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-secret"},
		Spec: v1alpha1.InvitationSpec{MaxUses: 5, Campaign: "lonely"}}
	if err := c.Create(ctx, inv); err != nil {
		t.Fatal(err)
	}
	cond := func(typ string) *metav1.Condition {
		got := &v1alpha1.Invitation{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(inv), got); err != nil {
			t.Fatal(err)
		}
		return meta.FindStatusCondition(got.Status.Conditions, typ)
	}
	eventually(t, 90*time.Second, "FleetAvailable names the missing Secret", func() (bool, string) {
		fa, ready := cond(v1alpha1.ConditionFleetAvailable), cond(v1alpha1.ConditionReady)
		return fa != nil && fa.Reason == "CreateContainerConfigError" && strings.Contains(fa.Message, "velvetrope-mongodb") &&
			ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == "FleetUnavailable", fmt.Sprintf("FleetAvailable %+v\nReady %+v", fa, ready)
	})
	if mail := cond(v1alpha1.ConditionMailDelivered); mail == nil || mail.Reason != "MailNotConfigured" {
		t.Errorf("MailDelivered %+v: the namespace has no mail Secret", mail)
	}
	events, err := platform.Client.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(events.Items, func(e eventsv1.Event) bool {
		return e.Reason == "CreateContainerConfigError" && e.Regarding.Name == "no-secret"
	}) {
		t.Error("no Warning event on the Invitation naming the cause")
	}

	if err := platform.PutSecret(ctx, ns, "velvetrope-mongodb", map[string]string{"uri": mongo.URI}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "Ready once the Secret exists", func() (bool, string) {
		ready := cond(v1alpha1.ConditionReady)
		return ready != nil && ready.Status == metav1.ConditionTrue, fmt.Sprintf("Ready %+v\n%s", ready, platform.Describe(ctx, ns))
	})
}

// countStatusWrites counts the writes to an Invitation while during runs.
func countStatusWrites(t *testing.T, ns, name string, during func()) int {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.NewWithWatch(platform.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(context.Background(), &v1alpha1.InvitationList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
	if err != nil {
		t.Fatal(err)
	}
	n := make(chan int, 1)
	go func() {
		count := 0
		for e := range w.ResultChan() {
			if e.Type == watch.Modified {
				count++
			}
		}
		n <- count
	}()
	during()
	w.Stop()
	return <-n
}
