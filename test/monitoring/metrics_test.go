package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// targetLabels are added by Prometheus and the Prometheus Operator when they
// scrape (the PodMonitor's podTargetLabels included), so no process exports
// them.
var targetLabels = []string{"namespace", "pod", "container", "endpoint", "service", "job", "instance", "velvetrope_io_campaign"}

// unprovoked are label values the expressions name that this test's traffic
// cannot make a process export, each with why; every other value an
// expression matches must be seen in a scrape.
var unprovoked = map[string]string{
	`velvetrope_store_failures_total{reason="definite"}`: "a document MongoDB refuses; no request can make the test bed refuse one",
}

// TestEveryNameIsExported runs a redeemer and the manager as processes on
// the FerretDB test bed and the envtest control plane, sends the redeemer
// one of every answer the dashboard draws (201, 200, 409, 410, 429, and 503
// busy and unavailable while FerretDB is frozen), has the manager reconcile
// an Invitation, scrapes both and checks every metric, label and label value
// each expression of the rules and the dashboard names against the scrapes.
func TestEveryNameIsExported(t *testing.T) {
	queries, _ := shipped(t)
	mongo, err := testbed.StartMongo()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mongo.Stop)
	mongo.RequireOwnServer(t) // it freezes FerretDB to provoke 503s
	db := testbed.UniqueName("monitoring")
	store := mongostore.New(mongo.Client.Database(db))
	ctx := context.Background()
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	for _, inv := range []invite.Invitation{
		{Code: "launch", MaxUses: 2, State: invite.StateActive, Campaign: "monitoring"},
		{Code: "other", MaxUses: 100, State: invite.StateActive, Campaign: "monitoring"},
	} {
		if err := store.PutInvitation(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	redeemerBin, err := testbed.Build("./cmd/redeemer", binDir)
	if err != nil {
		t.Fatal(err)
	}
	managerBin, err := testbed.Build("./cmd/manager", binDir)
	if err != nil {
		t.Fatal(err)
	}
	scrapes := []string{scrapeRedeemerAfterTraffic(t, redeemerBin, mongo, db), scrapeManagerAfterAReconcile(t, managerBin, mongo.URI, db)}

	// Mistakes the check must catch, checked after the real ones.
	mistakes := []query{
		{where: "a misspelt metric", expr: `rate(velvetrope_http_request_total[5m])`},
		{where: "a misspelt value", expr: `velvetrope_redemption_outcomes_total{result="redeemd"}`},
		{where: "a label the metric lacks", expr: `sum by (campaign) (velvetrope_mail_configured)`},
		{where: "a status never answered", expr: `velvetrope_http_requests_total{code=~"201|299"}`},
		{where: "a histogram's bare name", expr: `velvetrope_http_request_duration_seconds`},
	}
	var req checkRequest
	for _, q := range append(slices.Clone(queries), mistakes...) {
		req.Exprs = append(req.Exprs, q.promQL())
	}
	req.Exposition = scrapes
	ans := promcheck(t, req)
	scraped := series{}
	for i, e := range ans.Exposition {
		if e.Error != "" {
			t.Fatalf("scrape %d: %s", i, e.Error)
		}
		for name, ls := range e.Series {
			scraped[name] = append(scraped[name], ls...)
		}
	}
	checked := 0
	for i, q := range queries {
		for _, s := range ans.Exprs[i].Selectors { // an expression that does not parse has none: TestExpressionsParse reports it
			checked++
			for _, problem := range scraped.check(s, q.label) {
				t.Errorf("%s: %s\n%s", q.where, problem, q.expr)
			}
		}
	}
	t.Logf("%d selectors of %d expressions checked against %d scraped series names", checked, len(queries), len(scraped))
	for i, q := range mistakes {
		a := ans.Exprs[len(queries)+i]
		if len(a.Selectors) == 0 || len(scraped.check(a.Selectors[0], "")) == 0 {
			t.Errorf("the check missed %s: %s", q.where, q.expr)
		}
	}
}

// series holds scraped series by name, as Prometheus stores them (a
// histogram x as x_bucket with le, x_sum and x_count).
type series map[string][]map[string]string

var literalAlternation = regexp.MustCompile(`^[A-Za-z0-9_-]+(\|[A-Za-z0-9_-]+)*$`)

// check returns what sel asks that no scraped series has: its metric, a label
// it matches or groups by (or the label a dashboard variable lists), or a
// value it matches exactly or as one of a list of alternatives.
func (s series) check(sel selector, listed string) []string {
	all, ok := s[sel.Metric]
	if !ok {
		return []string{fmt.Sprintf("no process exports %s", sel.Metric)}
	}
	var problems []string
	hasLabel := func(name string) bool {
		return slices.Contains(targetLabels, name) || slices.ContainsFunc(all, func(ls map[string]string) bool { _, ok := ls[name]; return ok })
	}
	names := slices.Clone(sel.Grouping)
	if listed != "" {
		names = append(names, listed)
	}
	for _, m := range sel.Matchers {
		names = append(names, m.Name)
	}
	for _, name := range names {
		if !hasLabel(name) {
			problems = append(problems, fmt.Sprintf("%s has no label %s", sel.Metric, name))
		}
	}
	for _, m := range sel.Matchers {
		if slices.Contains(targetLabels, m.Name) {
			continue
		}
		var values []string
		switch {
		case m.Op == "=" || m.Op == "!=":
			values = []string{m.Value}
		case literalAlternation.MatchString(m.Value): // =~ or !~ a|b|c
			values = strings.Split(m.Value, "|")
		}
		for _, v := range values {
			key := fmt.Sprintf("%s{%s=%q}", sel.Metric, m.Name, v)
			if _, ok := unprovoked[key]; ok {
				continue
			}
			if !slices.ContainsFunc(all, func(ls map[string]string) bool { return ls[m.Name] == v }) {
				problems = append(problems, fmt.Sprintf("no scraped series %s (seen: %v)", key, valuesOf(all, m.Name)))
			}
		}
	}
	return problems
}

func valuesOf(all []map[string]string, label string) []string {
	var vs []string
	for _, ls := range all {
		if v, ok := ls[label]; ok && !slices.Contains(vs, v) {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs
}

// scrapeRedeemerAfterTraffic starts a redeemer, gets one answer of each kind
// from it, and returns its metrics. Rate limiting counts per client, so each
// step speaks as a client of its own (X-Forwarded-For from a trusted
// loopback proxy; the addresses are only header values).
func scrapeRedeemerAfterTraffic(t *testing.T, bin string, mongo *testbed.Mongo, db string) string {
	t.Helper()
	p, err := testbed.StartProcess(bin, []string{"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0",
		"--mongodb-uri", mongo.URI, "--mongodb-database", db, "--mail-dir", t.TempDir(), "--drain-delay", "0s",
		"--poll-interval", "200ms", "--usage-interval", "500ms", "--rate-limit", "3", "--trusted-proxies", "127.0.0.1/32",
		// One redemption may wait for MongoDB at a time, so a second one
		// while it hangs is shed (busy); a hung write gives up after 2s.
		"--max-pending", "1", "--admission-wait", "50ms", "--write-timeout", "2s", "--redeem-timeout", "3s"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("redeemer output:\n%s", p.Logs())
		}
	})
	base := "http://" + p.Addr
	waitFor(t, "the redeemer to be ready", func() bool { code, _ := get(base + "/readyz"); return code == http.StatusOK })

	post := func(code, email, client string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/invitations/"+code, strings.NewReader(`{"email":"`+email+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Code, Status string }
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Code + body.Status
	}
	for _, step := range []struct {
		code, email, client string
		status              int
	}{
		{"launch", "ada@example.com", "198.51.100.1", http.StatusCreated},
		{"launch", "ada@example.com", "198.51.100.1", http.StatusOK},
		{"launch", "bea@example.com", "198.51.100.2", http.StatusCreated},
		{"launch", "cid@example.com", "198.51.100.2", http.StatusGone},    // the code is full
		{"other", "ada@example.com", "198.51.100.3", http.StatusConflict}, // ada holds a slot of launch
		{"nope", "dee@example.com", "198.51.100.4", http.StatusNotFound},
		{"nope", "dee@example.com", "198.51.100.4", http.StatusNotFound},
		{"nope", "dee@example.com", "198.51.100.4", http.StatusNotFound},
		{"nope", "dee@example.com", "198.51.100.4", http.StatusTooManyRequests}, // a fourth in the minute
	} {
		if status, body := post(step.code, step.email, step.client); status != step.status {
			t.Fatalf("POST /invitations/%s %s: %d %s, want %d", step.code, step.email, status, body, step.status)
		}
	}

	// MongoDB hangs (FerretDB frozen): the first redemption waits for its
	// write until --write-timeout (503 unavailable), the others are shed
	// meanwhile (503 busy), and storage failures are counted.
	pid := mongo.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := sync.OnceFunc(func() { syscall.Kill(pid, syscall.SIGCONT) })
	t.Cleanup(resumed)
	answers := make(chan string, 4)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 100 * time.Millisecond) // the first is admitted first
			status, body := post("other", fmt.Sprintf("frozen%d@example.com", i), fmt.Sprintf("203.0.113.%d", i+1))
			answers <- fmt.Sprint(status, " ", body)
		})
	}
	wg.Wait()
	close(answers)
	var got []string
	for a := range answers {
		got = append(got, a)
	}
	slices.Sort(got)
	if !slices.Contains(got, "503 busy") || !slices.Contains(got, "503 unavailable") {
		t.Errorf("redemptions while MongoDB hangs: %v, want 503 busy and 503 unavailable", got)
	}
	waitFor(t, "a storage failure to be counted", func() bool {
		_, text := get("http://" + p.MetricsAddr + "/metrics")
		return strings.Contains(text, "velvetrope_store_failures_total{")
	})
	resumed()
	// The email of each 201 is sent (to --mail-dir) once MongoDB answers.
	waitFor(t, "the two emails to be sent", func() bool {
		_, text := get("http://" + p.MetricsAddr + "/metrics")
		return regexp.MustCompile(`(?m)^velvetrope_mail_sent_total [2-9]`).MatchString(text)
	})
	status, text := get("http://" + p.MetricsAddr + "/metrics")
	if status != http.StatusOK {
		t.Fatalf("redeemer GET /metrics: %d", status)
	}
	return text
}

// scrapeManagerAfterAReconcile starts the envtest control plane with the
// Invitation CRD, runs the manager as a process against it (plain-HTTP
// metrics, as --metrics-secure=false allows for local runs), lets it
// reconcile one Invitation and returns its metrics.
func scrapeManagerAfterAReconcile(t *testing.T, bin, mongoURI, db string) string {
	t.Helper()
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets, err := testbed.EnvtestAssets()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, ErrorIfCRDPathMissing: true,
		CRDDirectoryPaths: []string{filepath.Join(root, "config", "crd", "bases")}}
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "monitoring-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigFile := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfigFile, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	metricsAddr := freeAddr(t)
	logs, err := os.Create(filepath.Join(t.TempDir(), "manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	logged := func() string { b, _ := os.ReadFile(logs.Name()); return string(b) }
	cmd := exec.Command(bin, "--mongodb-uri", mongoURI, "--mongodb-database", db, "--redeemer-image", "velvetrope:test",
		"--metrics-secure=false", "--metrics-bind-address", metricsAddr, "--health-probe-bind-address", "0", "--leader-elect=false",
		"--fallback-bind-address", "0", "--staff-bind-address", "0")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfigFile)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("manager output:\n%s", logged())
		}
	})

	k, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "starfall"}}); err != nil {
		t.Fatal(err)
	}
	inv := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "velvetrope.io/v1alpha1", "kind": "Invitation",
		"metadata": map[string]any{"name": "monitoring-launch", "namespace": "starfall"},
		"spec":     map[string]any{"code": "monitoring-launch", "maxUses": int64(10), "campaign": "monitoring"},
	}}
	if err := k.Create(ctx, inv); err != nil {
		t.Fatal(err)
	}
	var text string
	waitFor(t, "the manager to reconcile the Invitation", func() bool {
		select {
		case <-exited:
			t.Fatalf("the manager exited:\n%s", logged())
		default:
		}
		_, text = get("http://" + metricsAddr + "/metrics")
		return reconciled.MatchString(text)
	})
	return text
}

var reconciled = regexp.MustCompile(`(?m)^controller_runtime_reconcile_total\{controller="invitation",result="[a-z_]+"\} [1-9]`)

func get(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
