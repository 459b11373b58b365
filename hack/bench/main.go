// Command bench is `make bench`: it starts the FerretDB test bed (or uses
// MONGODB_URI) and two redeemer processes on loopback, fires the same flash
// crowd at a fresh code through one replica and then through both, audits
// MongoDB, then measures the exhausted code against a trivial net/http
// handler with the same load generator. It prints Markdown for
// docs/benchmarks.md and writes it to out/bench.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/loadgen"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "trivial-server" {
		serveTrivial()
		return
	}
	requests := flag.Int("requests", 20000, "requests per phase")
	clients := flag.Int("clients", 256, "concurrent clients")
	slots := flag.Int("max-uses", 1000, "slots of the flash-crowd code")
	out := flag.String("out", "out/bench.md", "where to write the Markdown report")
	extra := flag.String("redeemer-flags", "", "extra flags for the redeemers, space-separated (for tuning runs)")
	idle := flag.Int("idle", 0, "instead: seed this many codes and measure one idle redeemer (make bench-idle)")
	window := flag.Duration("idle-window", 20*time.Second, "how long the idle measurement lasts")
	flag.Parse()
	if *idle > 0 {
		if err := runIdle(*idle, *window, "out/bench-idle.md"); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*requests, *clients, *slots, *out, strings.Fields(*extra)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bed is what every benchmark starts from: the redeemer built into tmp, the
// test bed and a fresh database with its indexes.
type bed struct {
	tmp, bin, dbName string
	mongo            *testbed.Mongo
	store            *mongostore.Store
}

func startBed(ctx context.Context) (*bed, error) {
	tmp, err := os.MkdirTemp("", "velvetrope-bench-")
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(os.Stderr, "Building redeemer, starting the MongoDB test bed…")
	b := &bed{tmp: tmp, dbName: testbed.UniqueName("bench")}
	if b.bin, err = testbed.Build("./cmd/redeemer", tmp); err != nil {
		b.stop()
		return nil, err
	}
	if b.mongo, err = testbed.StartMongo(); err != nil {
		b.stop()
		return nil, err
	}
	b.store = mongostore.New(b.mongo.Client.Database(b.dbName))
	if err := b.store.EnsureIndexes(ctx); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

func (b *bed) stop() {
	if b.mongo != nil {
		b.mongo.Stop()
	}
	os.RemoveAll(b.tmp)
}

func run(requests, clients, slots int, out string, extra []string) error {
	ctx := context.Background()
	b, err := startBed(ctx)
	if err != nil {
		return err
	}
	defer b.stop()
	tmp, bin, mongo, dbName, store := b.tmp, b.bin, b.mongo, b.dbName, b.store
	for _, inv := range []invite.Invitation{
		{Code: "flash1", MaxUses: slots, State: invite.StateActive, Campaign: "bench"},
		{Code: "flash2", MaxUses: slots, State: invite.StateActive, Campaign: "bench"},
		{Code: "gone", MaxUses: 1, State: invite.StateActive, Campaign: "bench"},
		{Code: "page", MaxUses: slots, State: invite.StateActive, Campaign: "bench"},
	} {
		if err := store.PutInvitation(ctx, inv); err != nil {
			return err
		}
	}

	var replicas []*testbed.Process
	var targets []string
	// A replica joins the fleet: it serves, and its peers (if any) see it.
	join := func() error {
		args := append([]string{"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0",
			"--mongodb-uri", mongo.URI, "--mongodb-database", dbName, "--rate-limit", "0", "--drain-delay", "0s", "--log-level", "info",
			"--mail-dir", filepath.Join(tmp, "mail")}, extra...)
		p, err := testbed.StartProcess(bin, args)
		if err != nil {
			return err
		}
		if err := waitReady("http://" + p.Addr); err != nil {
			p.Kill()
			return fmt.Errorf("%w\n%s", err, p.Logs())
		}
		replicas = append(replicas, p)
		targets = append(targets, "http://"+p.Addr)
		return testbed.WaitForPeers(replicas, 20*time.Second)
	}
	defer func() {
		for _, p := range replicas {
			p.Kill()
		}
	}()

	// The same crowd on a fresh code, through one replica, then through
	// two (round robin: a person's spelling variant lands on the other).
	// The second replica joins after the first crowd, so that the first
	// is one replica's, with nobody to hand claims to.
	var crowds []crowdRun
	var storeStats string
	for n, code := range []string{"flash1", "flash2"} {
		if err := join(); err != nil {
			return err
		}
		before := storeMetrics(replicas)
		fmt.Fprintf(os.Stderr, "Flash crowd: %d requests from %d clients on a code with %d slots, %d replica(s)…\n", requests, clients, slots, n+1)
		res := loadgen.Run(ctx, loadgen.Config{Targets: targets[:n+1], Codes: []string{code}, Requests: requests, Concurrency: clients, Email: crowdOf(code)})
		violations, err := loadgen.Audit(ctx, store, []string{code}, res, invite.DefaultFolding, nil)
		if err != nil {
			return err
		}
		stored, _ := store.Used(ctx, code)
		crowds = append(crowds, crowdRun{replicas: n + 1, code: code, res: res, stored: stored, violations: violations})
		storeStats += storeStatsSince(fmt.Sprintf("%d replica(s)", n+1), before, storeMetrics(replicas))
		// The next phase starts from the same quiet platform: the
		// crowd's emails go out first (the dispatchers share the cores and
		// the database with the crowd), or the phases would not compare.
		storeStats += waitForMail(ctx, store, code, 3*time.Minute)
	}

	// Exhaust "gone", then compare one replica with a trivial handler.
	loadgen.Run(ctx, loadgen.Config{Targets: targets[:1], Codes: []string{"gone"}, Requests: 1, Concurrency: 1, Email: func(int) string { return "first@example.com" }})
	trivial, err := startTrivial()
	if err != nil {
		return err
	}
	defer trivial.Kill()
	fmt.Fprintln(os.Stderr, "Exhausted code and landing page vs trivial handler…")
	memory := measureInTurn(ctx, []memoryPhase{
		{target: targets[0], code: "gone"},
		{target: "http://" + trivial.Addr, code: "gone"},
		{target: targets[0], code: "page", page: true},
	}, max(requests/5, 1), clients)

	report := renderReport(requests, clients, slots, crowds, memory) + storeStats
	fmt.Print(report)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
		os.WriteFile(out, []byte(report), 0o644)
	}
	for _, c := range crowds {
		if len(c.violations) > 0 {
			return fmt.Errorf("audit failed: %d violations", len(c.violations))
		}
	}
	return nil
}

// crowdRun is one flash-crowd phase and its audit.
type crowdRun struct {
	replicas   int
	code       string
	res        loadgen.Result
	stored     int
	violations []string
}

// crowdOf is the crowd for code: mostly distinct people (nobody from another
// phase's crowd); every tenth request is a spelling variant of the previous
// person, which round robin sends to the other replica, and every twentieth
// is invalid.
func crowdOf(code string) func(int) string {
	return func(i int) string {
		switch {
		case i%20 == 7:
			return fmt.Sprintf("not an email %d", i)
		case i%10 == 9:
			return fmt.Sprintf("Player%d+again@%s.Example.com", i-1, code)
		default:
			return fmt.Sprintf("player%d@%s.example.com", i, code)
		}
	}
}

// memoryPhase is a load answered from memory: the exhausted code, the
// trivial handler or the landing page.
type memoryPhase struct {
	target, code string
	page         bool
}

// memoryRounds is how many slices of each memoryPhase measureInTurn takes.
const memoryRounds = 20

// measureInTurn measures phases in short slices of sliceRequests requests
// taken in turn, memoryRounds times over, and returns each phase's slices,
// round by round. The VM's speed swings from one second to the next (the
// trivial handler's throughput has moved by half between phases a few
// seconds apart), and slices a fraction of a second apart share it, so the
// phases' ratios compare the handlers, not the moments. Each phase keeps
// its connections from slice to slice; a slice of each, first, warms them.
func measureInTurn(ctx context.Context, phases []memoryPhase, sliceRequests, clients int) [][]loadgen.Result {
	cfgs := make([]loadgen.Config, len(phases))
	for i, p := range phases {
		client := loadgen.NewClient(clients, 30*time.Second)
		defer client.CloseIdleConnections()
		cfgs[i] = loadgen.Config{Targets: []string{p.target}, Codes: []string{p.code}, Requests: sliceRequests, Concurrency: clients,
			Email: crowdOf(p.code), Page: p.page, Client: client}
		loadgen.Run(ctx, cfgs[i])
	}
	rounds := make([][]loadgen.Result, memoryRounds)
	for r := range rounds {
		for _, cfg := range cfgs {
			rounds[r] = append(rounds[r], loadgen.Run(ctx, cfg))
		}
	}
	return rounds
}

// phaseOf is phase i of every round as one result.
func phaseOf(rounds [][]loadgen.Result, i int) loadgen.Result {
	var runs []loadgen.Result
	for _, r := range rounds {
		runs = append(runs, r[i])
	}
	return loadgen.Combine(runs...)
}

// roundRatios is the middle half of the rounds' ratios of phase i to phase
// j, in percent: how much the ratio moves from one round to the next.
func roundRatios(rounds [][]loadgen.Result, i, j int) string {
	var ratios []float64
	for _, r := range rounds {
		ratios = append(ratios, 100*r[i].RPS()/r[j].RPS())
	}
	slices.Sort(ratios)
	return fmt.Sprintf("%.0f–%.0f%%", ratios[len(ratios)/4], ratios[len(ratios)*3/4])
}

func renderReport(requests, clients, slots int, crowds []crowdRun, memory [][]loadgen.Result) string {
	exhausted, baseline, landing := phaseOf(memory, 0), phaseOf(memory, 1), phaseOf(memory, 2)
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s %s/%s. Command: `make bench` (%d requests per phase, %d concurrent clients).\n\n",
		runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH, requests, clients)
	fmt.Fprintf(&b, "| phase | req/s | p50 / p90 / p99 | winners (201) p50 / p90 / p99 | exhausted after | outcomes |\n|---|---|---|---|---|---|\n")
	pcts := func(p func(float64) time.Duration) string {
		return fmt.Sprintf("%s / %s / %s", ms(p(50)), ms(p(90)), ms(p(99)))
	}
	for _, c := range crowds {
		fmt.Fprintf(&b, "| flash crowd, %d replica(s), maxUses %d | %.0f | %s | %s | %s | %s |\n", c.replicas, slots, c.res.RPS(),
			pcts(c.res.Percentile), pcts(c.res.WinnerPercentile), ms(c.res.LastCreated[c.code]), statuses(c.res))
	}
	row := func(name string, r loadgen.Result) {
		fmt.Fprintf(&b, "| %s | %.0f | %s | | | %s |\n", name, r.RPS(), pcts(r.Percentile), statuses(r))
	}
	row(fmt.Sprintf("exhausted code, 1 replica (%d slices)", len(memory)), exhausted)
	row(fmt.Sprintf("landing page (GET, HTML), 1 replica (%d slices)", len(memory)), landing)
	row(fmt.Sprintf("trivial net/http handler, 1 process (%d slices, in turn with the two above)", len(memory)), baseline)
	b.WriteString("\n")
	for _, c := range crowds {
		audit := "clean"
		if len(c.violations) > 0 {
			audit = fmt.Sprintf("%d VIOLATIONS: %s", len(c.violations), strings.Join(c.violations[:min(5, len(c.violations))], "; "))
		}
		fmt.Fprintf(&b, "- %d replica(s): %d redemptions stored for %d slots; audit: %s.\n", c.replicas, c.stored, slots, audit)
	}
	one, two := crowds[0].res, crowds[len(crowds)-1].res
	fmt.Fprintf(&b, "- 2 replicas reach %.0f%% of 1 replica's throughput (target ≥ 70%%); winners' p99 %s (target ≤ 200 ms); code exhausted after %s (target ≤ 500 ms).\n",
		100*two.RPS()/one.RPS(), ms(two.WinnerPercentile(99)), ms(two.LastCreated[crowds[len(crowds)-1].code]))
	fmt.Fprintf(&b, "- Exhausted-code throughput is %.0f%% of the trivial handler (target ≥ 90%%); the landing page %.0f%% (target ≥ 70%%). "+
		"Each phase ran in %d slices of %d requests, taken in turn with the others; the middle half of the slices' ratios: %s and %s.\n",
		100*exhausted.RPS()/baseline.RPS(), 100*landing.RPS()/baseline.RPS(), len(memory), len(memory[0][0].Outcomes),
		roundRatios(memory, 0, 1), roundRatios(memory, 2, 1))
	return b.String()
}

func statuses(r loadgen.Result) string { return r.StatusSummary() }

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			return strings.TrimSpace(line[strings.Index(line, ":")+1:])
		}
	}
	return "unknown CPU"
}

func waitReady(base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 30s", base)
}

// startTrivial runs this binary as the baseline server, in a process of its
// own like the redeemer, so both pay the same process and loopback costs.
func startTrivial() (*testbed.Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(self); err != nil {
		return nil, err
	}
	return testbed.StartProcess(self, []string{"trivial-server"})
}

func serveTrivial() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("{\"msg\":\"Listening\",\"addr\":%q}\n", ln.Addr().String())
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
}

// waitForMail waits until code has no email pending, at most limit, and
// says how long that took.
func waitForMail(ctx context.Context, store *mongostore.Store, code string, limit time.Duration) string {
	fmt.Fprintf(os.Stderr, "Waiting for the emails of %s…\n", code)
	start := time.Now()
	for time.Since(start) < limit {
		if c, err := store.MailCounts(ctx, code); err == nil && c.Pending == 0 {
			return fmt.Sprintf("- %s's emails were all sent %.0f s after its crowd; the next phase started then.\n", code, time.Since(start).Seconds())
		}
		time.Sleep(time.Second)
	}
	return fmt.Sprintf("- %s's emails were still pending %.0f s after its crowd; the next phase started anyway.\n", code, limit.Seconds())
}

// storeMetrics sums the replicas' store metrics.
func storeMetrics(replicas []*testbed.Process) map[string]float64 {
	sums := map[string]float64{}
	for _, p := range replicas {
		for _, prefix := range []string{"velvetrope_store_", "velvetrope_peer_forwards_total"} {
			for name, v := range testbed.Scrape(p.MetricsAddr, prefix) {
				sums[name] += v
			}
		}
	}
	return sums
}

// storeStatsSince says what one crowd cost storage, from the replicas'
// metrics before and after it: how many inserts, reloads, conflict reads
// and leases it took, and how long they lasted.
func storeStatsSince(phase string, before, after map[string]float64) string {
	d := func(name string) float64 { return after[name] - before[name] }
	var b strings.Builder
	for _, op := range []string{"claim", "hinted_holders", "explain_emails", "record_holders", "lease", "occupants", "tallies", "invitations"} {
		n := d(`velvetrope_store_operation_duration_seconds_count{op="` + op + `"}`)
		if n == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s %.0f×, mean %.1f ms; ", op, n, 1000*d(`velvetrope_store_operation_duration_seconds_sum{op="`+op+`"}`)/n)
	}
	if n := d("velvetrope_store_claim_batch_size_count"); n > 0 {
		fmt.Fprintf(&b, "mean batch %.1f claims; claims", d("velvetrope_store_claim_batch_size_sum")/n)
	}
	var results []string
	for _, r := range []string{"inserted", "slot-taken", "slot-closed", "email-taken", "retry", "failed"} {
		if n := d(`velvetrope_store_claim_results_total{result="` + r + `"}`); n > 0 {
			results = append(results, fmt.Sprintf(" %s %.0f", r, n))
		}
	}
	forwards := ""
	if n := d(`velvetrope_peer_forwards_total{result="answered"}`); n > 0 {
		forwards = fmt.Sprintf(" Claims handed to their writer: %.0f, unanswered %.0f.", n, d(`velvetrope_peer_forwards_total{result="unanswered"}`))
	}
	return "- MongoDB operations during the crowd on " + phase + ": " + b.String() + strings.Join(results, ",") + "." + forwards + "\n"
}
