// Command bench is `make bench`: it starts the FerretDB test bed (or uses
// MONGODB_URI) and two redeemer processes on loopback, fires a flash crowd at
// one code, audits MongoDB, then measures the exhausted code against a trivial
// net/http handler with the same load generator. It prints Markdown for
// docs/benchmarks.md and writes it to out/bench.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
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
	flag.Parse()
	if err := run(*requests, *clients, *slots, *out, strings.Fields(*extra)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(requests, clients, slots int, out string, extra []string) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "velvetrope-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "Building redeemer, starting the MongoDB test bed…")
	bin, err := testbed.Build("./cmd/redeemer", tmp)
	if err != nil {
		return err
	}
	mongo, err := testbed.StartMongo()
	if err != nil {
		return err
	}
	defer mongo.Stop()
	dbName := testbed.UniqueName("bench")
	store := mongostore.New(mongo.Client.Database(dbName))
	if err := store.EnsureIndexes(ctx); err != nil {
		return err
	}
	for _, inv := range []invite.Invitation{
		{Code: "flash", MaxUses: slots, State: invite.StateActive, Campaign: "bench"},
		{Code: "gone", MaxUses: 1, State: invite.StateActive, Campaign: "bench"},
	} {
		if err := store.PutInvitation(ctx, inv); err != nil {
			return err
		}
	}

	var replicas []*testbed.Process
	for range 2 {
		args := append([]string{"--listen", "127.0.0.1:0", "--mongodb-uri", mongo.URI,
			"--mongodb-database", dbName, "--rate-limit", "0", "--drain-delay", "0s", "--log-level", "info",
			"--mail-dir", filepath.Join(tmp, "mail")}, extra...)
		p, err := testbed.StartProcess(bin, args)
		if err != nil {
			return err
		}
		defer p.Kill()
		if err := waitReady("http://" + p.Addr); err != nil {
			return fmt.Errorf("%w\n%s", err, p.Logs())
		}
		replicas = append(replicas, p)
	}
	targets := []string{"http://" + replicas[0].Addr, "http://" + replicas[1].Addr}

	fmt.Fprintf(os.Stderr, "Flash crowd: %d requests from %d clients on one code with %d slots, two replicas…\n", requests, clients, slots)
	crowd := loadgen.Run(ctx, loadgen.Config{Targets: targets, Codes: []string{"flash"}, Requests: requests, Concurrency: clients, Email: crowdEmail})
	violations, err := loadgen.Audit(ctx, store, []string{"flash"}, crowd, invite.DefaultFolding, nil)
	if err != nil {
		return err
	}
	stored, _ := store.Used(ctx, "flash")
	storeStats := scrapeStoreStats(targets)

	// Exhaust "gone", then compare one replica with a trivial handler.
	loadgen.Run(ctx, loadgen.Config{Targets: targets[:1], Codes: []string{"gone"}, Requests: 1, Concurrency: 1, Email: func(int) string { return "first@example.com" }})
	trivial, err := startTrivial()
	if err != nil {
		return err
	}
	defer trivial.Kill()
	fmt.Fprintln(os.Stderr, "Exhausted code vs trivial handler…")
	phase := func(target, code string) loadgen.Result {
		cfg := loadgen.Config{Targets: []string{target}, Codes: []string{code}, Requests: requests, Concurrency: clients, Email: crowdEmail}
		warm := cfg
		warm.Requests = requests / 10
		loadgen.Run(ctx, warm)
		return loadgen.Run(ctx, cfg)
	}
	exhausted := phase(targets[0], "gone")
	baseline := phase("http://"+trivial.Addr, "gone")

	report := renderReport(requests, clients, slots, crowd, stored, violations, exhausted, baseline) + storeStats
	fmt.Print(report)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
		os.WriteFile(out, []byte(report), 0o644)
	}
	if len(violations) > 0 {
		return fmt.Errorf("audit failed: %d violations", len(violations))
	}
	return nil
}

// crowdEmail: mostly distinct people; every tenth request is a spelling
// variant of the previous person and every twentieth is invalid.
func crowdEmail(i int) string {
	switch {
	case i%20 == 7:
		return fmt.Sprintf("not an email %d", i)
	case i%10 == 9:
		return fmt.Sprintf("Player%d+again@Example.com", i-1)
	default:
		return fmt.Sprintf("player%d@example.com", i)
	}
}

func renderReport(requests, clients, slots int, crowd loadgen.Result, stored int, violations []string, exhausted, baseline loadgen.Result) string {
	var b strings.Builder
	audit := "clean"
	if len(violations) > 0 {
		audit = fmt.Sprintf("%d VIOLATIONS: %s", len(violations), strings.Join(violations[:min(5, len(violations))], "; "))
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s %s/%s. Command: `make bench` (%d requests per phase, %d concurrent clients).\n\n",
		runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH, requests, clients)
	fmt.Fprintf(&b, "| phase | req/s | p50 | p99 | max | outcomes |\n|---|---|---|---|---|---|\n")
	row := func(name string, r loadgen.Result) {
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s |\n", name, r.RPS(), ms(r.Percentile(50)), ms(r.Percentile(99)), ms(r.Percentile(100)), statuses(r))
	}
	row(fmt.Sprintf("flash crowd, 2 replicas, maxUses %d", slots), crowd)
	row("exhausted code, 1 replica", exhausted)
	row("trivial net/http handler, 1 process", baseline)
	fmt.Fprintf(&b, "\n- Code exhausted after %s (last 201); %d redemptions stored for %d slots; audit: %s.\n", ms(crowd.LastCreated["flash"]), stored, slots, audit)
	fmt.Fprintf(&b, "- Exhausted-code throughput is %.0f%% of the trivial handler (target ≥ 70%%); flash-crowd p99 %s (target ≤ 250 ms).\n",
		100*exhausted.RPS()/baseline.RPS(), ms(crowd.Percentile(99)))
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

// scrapeStoreStats sums the replicas' store metrics after the crowd: how many
// inserts, reloads and conflict look-ups it took, and how long they lasted.
func scrapeStoreStats(targets []string) string {
	sums := map[string]float64{}
	for _, t := range targets {
		resp, err := http.Get(t + "/metrics")
		if err != nil {
			return ""
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			for _, prefix := range []string{"velvetrope_store_operation_duration_seconds_sum", "velvetrope_store_operation_duration_seconds_count", "velvetrope_store_claim_batch_size_sum", "velvetrope_store_claim_batch_size_count"} {
				if strings.HasPrefix(line, prefix) {
					f := strings.Fields(line)
					v, _ := strconv.ParseFloat(f[len(f)-1], 64)
					sums[f[0]] += v
				}
			}
		}
	}
	var b strings.Builder
	for _, op := range []string{"claim", "occupants", "tallies", "invitations"} {
		n := sums[`velvetrope_store_operation_duration_seconds_count{op="`+op+`"}`]
		if n == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s %.0f×, mean %.1f ms; ", op, n, 1000*sums[`velvetrope_store_operation_duration_seconds_sum{op="`+op+`"}`]/n)
	}
	if n := sums["velvetrope_store_claim_batch_size_count"]; n > 0 {
		fmt.Fprintf(&b, "mean batch %.1f claims", sums["velvetrope_store_claim_batch_size_sum"]/n)
	}
	return "- MongoDB operations during the whole run, both replicas: " + b.String() + ".\n"
}
