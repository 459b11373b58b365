// Command velvetrope-load fires a flash crowd at redeemers, the way a post
// from a big account does, prints what the players saw, and with --audit
// checks the invariants in MongoDB afterwards. Run it against your own
// deployment before a launch; make bench and the fault tests use the same
// package (internal/loadgen). See docs/reliability.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/loadgen"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

var (
	errUsage = errors.New("usage")
	errAudit = errors.New("audit found violations")
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "velvetrope-load:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "velvetrope-load:", err)
		os.Exit(1)
	}
}

type options struct {
	urls, codes       []string
	requests, clients int
	duration          time.Duration
	rate              float64
	mix               loadgen.Mix
	retries           int
	jsonPath, plot    string
	audit             bool
	mongoURI, mongoDB string
	quiet             bool
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("velvetrope-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	urls := fs.String("url", "", "comma-separated base URLs of redeemers (required), e.g. https://play.example.com")
	codes := fs.String("code", "", "comma-separated invitation codes (required)")
	fs.IntVar(&o.requests, "requests", 10000, "requests to send")
	fs.IntVar(&o.clients, "concurrency", 100, "concurrent clients")
	fs.DurationVar(&o.duration, "duration", 0, "stop sending after this long (0: when --requests are sent)")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: requests per second arriving whatever the answers (0: closed loop)")
	fs.Float64Var(&o.mix.Duplicates, "duplicates", 0.05, "share of requests repeating an earlier player's email")
	fs.Float64Var(&o.mix.Variants, "variants", 0.05, "share of requests using a spelling variant (case, +tag) of an earlier player")
	fs.Float64Var(&o.mix.Invalid, "invalid", 0.02, "share of requests with an invalid email")
	fs.IntVar(&o.retries, "retries", 0, "retries after no answer, 429 or 503 (honouring Retry-After)")
	fs.StringVar(&o.jsonPath, "json", "", "write the summary, timeline and audit as JSON to this file")
	fs.StringVar(&o.plot, "plot", "", "write a throughput/latency plot over time to this .svg or .png file")
	fs.BoolVar(&o.audit, "audit", false, "afterwards, check the invariants in MongoDB (needs --mongodb-uri)")
	fs.StringVar(&o.mongoURI, "mongodb-uri", os.Getenv("MONGODB_URI"), "MongoDB for --audit (env MONGODB_URI)")
	fs.StringVar(&o.mongoDB, "mongodb-database", "velvetrope", "database for --audit")
	fs.BoolVar(&o.quiet, "quiet", false, "no live progress line")
	seed := fs.Uint64("seed", 0, "seed of the email mix (0: random); emails of one seed are the same players")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	o.urls, o.codes = splitList(*urls), splitList(*codes)
	o.mix.Seed = *seed
	if o.mix.Seed == 0 {
		o.mix.Seed = rand.Uint64()
	}
	o.mix.Prefix = fmt.Sprintf("load%x-", o.mix.Seed&0xffffff)
	for _, u := range o.urls {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return o, fmt.Errorf("%w: --url %q must start with http:// or https://", errUsage, u)
		}
	}
	switch share := o.mix.Duplicates + o.mix.Variants + o.mix.Invalid; {
	case len(o.urls) == 0 || len(o.codes) == 0:
		return o, fmt.Errorf("%w: --url and --code are required", errUsage)
	case o.requests < 1 || o.clients < 1 || o.rate < 0 || o.retries < 0:
		return o, fmt.Errorf("%w: --requests and --concurrency must be positive, --rate and --retries not negative", errUsage)
	case o.mix.Duplicates < 0 || o.mix.Variants < 0 || o.mix.Invalid < 0 || share > 1:
		return o, fmt.Errorf("%w: --duplicates, --variants and --invalid are shares that add up to at most 1", errUsage)
	case o.audit && o.mongoURI == "":
		return o, fmt.Errorf("%w: --audit needs --mongodb-uri (or MONGODB_URI)", errUsage)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	cfg := loadgen.Config{
		Targets: o.urls, Codes: o.codes, Requests: o.requests, Duration: o.duration,
		Concurrency: o.clients, Rate: o.rate, Email: o.mix.Email, Retries: o.retries,
	}
	if !o.quiet {
		cfg.Progress = func(p loadgen.Progress) {
			fmt.Fprintf(stderr, "\r%d/%d (%.0f%%) in %.1fs  %s   ", p.Done, p.Total, 100*float64(p.Done)/float64(p.Total),
				p.Elapsed.Seconds(), statusLine(p.Statuses))
		}
	}
	var store *mongostore.Store
	var before map[string]bool
	if o.audit {
		client, err := mongostore.Connect(o.mongoURI, "velvetrope-load")
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		defer client.Disconnect(context.Background())
		store = mongostore.New(client.Database(o.mongoDB))
		if before, err = loadgen.Snapshot(ctx, store, o.codes); err != nil {
			return fmt.Errorf("audit: reading what is stored before the run: %w", err)
		}
	}
	res := loadgen.Run(ctx, cfg)
	if !o.quiet {
		fmt.Fprintln(stderr)
	}
	fmt.Fprintln(stdout, res.Summary())
	for _, code := range o.codes {
		if at, ok := res.LastCreated[code]; ok {
			fmt.Fprintf(stdout, "%s: last 201 at %v\n", code, at.Round(time.Millisecond))
		}
	}

	var violations []string
	if o.audit {
		if violations, err = loadgen.Audit(ctx, store, o.codes, res, invite.DefaultFolding, before); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if len(violations) == 0 {
			fmt.Fprintln(stdout, "audit: clean")
		}
		for _, v := range violations {
			fmt.Fprintln(stdout, "audit: VIOLATION:", v)
		}
	}
	if o.plot != "" {
		if err := loadgen.Plot(res, fmt.Sprintf("%d requests, %d clients, %s", len(res.Outcomes), o.clients, strings.Join(o.codes, ", ")), o.plot); err != nil {
			return err
		}
	}
	if o.jsonPath != "" {
		if err := writeJSON(o, res, violations); err != nil {
			return err
		}
	}
	if len(violations) > 0 {
		return errAudit
	}
	return nil
}

// report is the --json document.
type report struct {
	Requests    int                `json:"requests"`
	Clients     int                `json:"concurrency"`
	Rate        float64            `json:"rate,omitempty"`
	Seconds     float64            `json:"seconds"`
	RPS         float64            `json:"requestsPerSecond"`
	LatencyMS   map[string]float64 `json:"latencyMs"`
	Statuses    map[string]int     `json:"statuses"` // "0" counts requests never answered
	LastCreated map[string]float64 `json:"lastCreatedMs"`
	Timeline    []second           `json:"timeline"`
	Audited     bool               `json:"audited"`
	Violations  []string           `json:"violations"`
}

type second struct {
	At       int     `json:"at"`
	Requests int     `json:"requests"`
	P50MS    float64 `json:"p50Ms"`
	P99MS    float64 `json:"p99Ms"`
}

func writeJSON(o options, res loadgen.Result, violations []string) error {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	r := report{
		Requests: len(res.Outcomes), Clients: o.clients, Rate: o.rate, Seconds: res.Duration.Seconds(), RPS: res.RPS(),
		LatencyMS:   map[string]float64{"p50": ms(res.Percentile(50)), "p90": ms(res.Percentile(90)), "p99": ms(res.Percentile(99)), "max": ms(res.Percentile(100))},
		Statuses:    map[string]int{},
		LastCreated: map[string]float64{},
		Audited:     o.audit,
		Violations:  append([]string{}, violations...),
	}
	for s, n := range res.Statuses {
		r.Statuses[fmt.Sprint(s)] = n
	}
	for c, d := range res.LastCreated {
		r.LastCreated[c] = ms(d)
	}
	for _, s := range res.Timeline() {
		r.Timeline = append(r.Timeline, second{s.At, s.Requests, ms(s.P50), ms(s.P99)})
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.jsonPath, append(b, '\n'), 0o644)
}

func statusLine(st map[int]int) string {
	var codes []int
	for c := range st {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d:%d", c, st[c]))
	}
	return strings.Join(parts, " ")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, strings.TrimSuffix(p, "/"))
		}
	}
	return out
}
