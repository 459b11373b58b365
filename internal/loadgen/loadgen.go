// Package loadgen fires a flash crowd of redemption requests at redeemers and
// audits the result in storage. The velvetrope-load tool, make bench and the
// fault tests use it; it speaks HTTP to any deployment and never imports the
// MongoDB driver (the audit reads storage through an interface).
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one crowd.
type Config struct {
	// Targets are base URLs, used round-robin, unless Route is set.
	Targets []string
	// Route picks the base URL for request i (for example only ready
	// endpoints, as a Kubernetes Service does).
	Route func(i int) string
	// Codes are the invitation codes, request i going to Codes[i%len].
	Codes []string
	// Requests is how many requests to send; Duration, if set, stops
	// sending earlier.
	Requests int
	Duration time.Duration
	// Concurrency is the number of clients. With Rate 0 they loop
	// (closed loop: a client sends its next request when the last one is
	// answered); with Rate > 0 requests arrive at Rate per second whatever
	// the answers (open loop) and latency counts from the scheduled time.
	Concurrency int
	Rate        float64
	// Email returns the email of request i.
	Email func(i int) string
	// Page makes each request a GET of the code's landing page, as a
	// browser opening the link does, instead of a redemption.
	Page bool
	// Retries is how often a request is retried after a transport error,
	// 429 or 503, honouring Retry-After (capped at MaxBackoff).
	Retries    int
	MaxBackoff time.Duration
	// Timeout bounds one attempt [30s].
	Timeout time.Duration
	// ForwardedFor, when set, gives request i an X-Forwarded-For address,
	// as a proxy in front of the redeemers (an ingress controller) would:
	// many players from one test client. The redeemers must trust the
	// client's address as a proxy (--trusted-proxies).
	ForwardedFor func(i int) string
	// Progress, when set, is called about twice a second.
	Progress func(Progress)
	// Client, when set, sends the requests, so that runs in a row can share
	// its kept-alive connections (its own Timeout then bounds an attempt,
	// not the one above); by default each run opens its own (NewClient:
	// Concurrency connections per target), and closes them at the end.
	Client *http.Client
}

// Progress is a live view of a run.
type Progress struct {
	Done, Total int
	Elapsed     time.Duration
	Statuses    map[int]int
}

// Outcome is what happened to one request (after its retries).
type Outcome struct {
	Code, Email string
	Start       time.Duration // since the run began (scheduled time in open loop)
	Latency     time.Duration // until the final answer, retries included
	Status      int           // final HTTP status; 0: no answer (transport error)
	Attempts    int
}

// Result is what the crowd saw.
type Result struct {
	Duration time.Duration
	Outcomes []Outcome
	// Derived by finish:
	Latencies []time.Duration // sorted
	Winners   []time.Duration // latencies of the 201s, sorted: how long a player who got in waited
	Statuses  map[int]int     // final statuses; 0 counts requests never answered
	// Answered: emails answered 201; Repeated: answered 200; Unanswered:
	// final transport error or 5xx, which may or may not have landed.
	Answered, Repeated, Unanswered []string
	// LastCreated is when, after the start, the last 201 came back, per
	// code: how long the crowd took to exhaust it.
	LastCreated map[string]time.Duration
}

// NewClient is the client a run uses by default: up to clients connections
// per target, kept alive, no compression (a crowd's phones would ask for it,
// but the bench measures the server's work, not gzip's), and timeout per
// attempt.
func NewClient(clients int, timeout time.Duration) *http.Client {
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
	return &http.Client{Transport: transport, Timeout: timeout}
}

// Run fires the crowd and waits for every answer.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	if cfg.Route == nil {
		targets := cfg.Targets
		cfg.Route = func(i int) string { return targets[i%len(targets)] }
	}
	client := cfg.Client
	if client == nil {
		client = NewClient(cfg.Concurrency, cfg.Timeout)
		defer client.CloseIdleConnections()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	if cfg.Duration > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithDeadline(ctx, start.Add(cfg.Duration))
		defer stop()
	}
	outcomes := make([]Outcome, cfg.Requests)
	var done atomic.Int64
	var sent atomic.Int64
	var statusMu sync.Mutex
	statuses := map[int]int{}

	work := make(chan int, cfg.Concurrency)
	go dispatch(ctx, cfg, start, work)
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for i := range work {
				sent.Add(1)
				scheduled := start
				if cfg.Rate > 0 {
					scheduled = start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
				} else {
					scheduled = time.Now()
				}
				o := Outcome{Code: cfg.Codes[i%len(cfg.Codes)], Email: cfg.Email(i), Start: scheduled.Sub(start)}
				o.Status, o.Attempts = send(ctx, client, cfg, i, o.Code, o.Email)
				o.Latency = time.Since(scheduled)
				outcomes[i] = o
				statusMu.Lock()
				statuses[o.Status]++
				statusMu.Unlock()
				done.Add(1)
			}
		})
	}
	progressDone := make(chan struct{})
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-progressDone:
					return
				case <-t.C:
					statusMu.Lock()
					snap := make(map[int]int, len(statuses))
					for k, v := range statuses {
						snap[k] = v
					}
					statusMu.Unlock()
					cfg.Progress(Progress{Done: int(done.Load()), Total: cfg.Requests, Elapsed: time.Since(start), Statuses: snap})
				}
			}
		}()
	}
	wg.Wait()
	close(progressDone)
	res := Result{Duration: time.Since(start), Outcomes: outcomes[:0]}
	for _, o := range outcomes {
		if o.Attempts > 0 { // requests never sent (deadline) are not part of the run
			res.Outcomes = append(res.Outcomes, o)
		}
	}
	res.finish()
	return res
}

// dispatch hands out request numbers: as fast as clients take them (closed
// loop) or on schedule (open loop), until Requests or the context ends.
func dispatch(ctx context.Context, cfg Config, start time.Time, work chan<- int) {
	defer close(work)
	for i := range cfg.Requests {
		if cfg.Rate > 0 {
			at := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return
				}
			}
		}
		select {
		case work <- i:
		case <-ctx.Done():
			return
		}
	}
}

// send posts one redemption, retrying as a polite client does.
func send(ctx context.Context, c *http.Client, cfg Config, i int, code, email string) (status, attempts int) {
	body, _ := json.Marshal(map[string]string{"email": email})
	for attempts = 1; ; attempts++ {
		var retryAfter time.Duration
		forwarded := ""
		if cfg.ForwardedFor != nil {
			forwarded = cfg.ForwardedFor(i)
		}
		status, retryAfter = post(ctx, c, cfg.Route(i)+"/invitations/"+code, body, cfg.Page, forwarded)
		retryable := status == 0 || status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
		if !retryable || attempts > cfg.Retries || ctx.Err() != nil {
			return status, attempts
		}
		wait := min(max(retryAfter, 50*time.Millisecond), cfg.MaxBackoff)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return status, attempts
		}
	}
}

// post sends the redemption (or, for page, a GET of the landing page).
func post(ctx context.Context, c *http.Client, url string, body []byte, page bool, forwarded string) (int, time.Duration) {
	// Requests outlive the run's deadline: an answer already on its way is
	// part of the result.
	method, reader := http.MethodPost, io.Reader(bytes.NewReader(body))
	if page {
		method, reader = http.MethodGet, nil
	}
	req, err := http.NewRequestWithContext(context.WithoutCancel(ctx), method, url, reader)
	if err != nil {
		return 0, 0
	}
	if forwarded != "" {
		req.Header.Set("X-Forwarded-For", forwarded)
	}
	if page {
		req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
		req.Header.Set("Accept-Language", "en")
	} else {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var retry time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		retry = time.Duration(s) * time.Second
	}
	return resp.StatusCode, retry
}

func (r *Result) finish() {
	r.Statuses = map[int]int{}
	r.LastCreated = map[string]time.Duration{}
	r.Latencies = make([]time.Duration, 0, len(r.Outcomes))
	for _, o := range r.Outcomes {
		r.Latencies = append(r.Latencies, o.Latency)
		r.Statuses[o.Status]++
		switch {
		case o.Status == http.StatusCreated:
			r.Answered = append(r.Answered, o.Email)
			r.Winners = append(r.Winners, o.Latency)
			r.LastCreated[o.Code] = max(r.LastCreated[o.Code], o.Start+o.Latency)
		case o.Status == http.StatusOK:
			r.Repeated = append(r.Repeated, o.Email)
		case o.Status == 0 || o.Status >= 500:
			r.Unanswered = append(r.Unanswered, o.Email)
		}
	}
	slices.Sort(r.Latencies)
	slices.Sort(r.Winners)
}

// Combine makes one result of runs made one after another: all their
// requests, over the sum of their durations. (Each outcome's Start stays
// relative to its own run.)
func Combine(runs ...Result) Result {
	var all Result
	for _, r := range runs {
		all.Outcomes = append(all.Outcomes, r.Outcomes...)
		all.Duration += r.Duration
	}
	all.finish()
	return all
}

// RPS is requests per second over the whole run.
func (r Result) RPS() float64 { return float64(len(r.Latencies)) / r.Duration.Seconds() }

// Percentile returns the p-th (0..100) latency.
func (r Result) Percentile(p float64) time.Duration { return percentile(r.Latencies, p) }

// WinnerPercentile returns the p-th (0..100) latency of the 201 answers.
func (r Result) WinnerPercentile(p float64) time.Duration { return percentile(r.Winners, p) }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p/100)]
}

// StatusSummary is "1000×201, 3×503" in status order; ×0 means no answer.
func (r Result) StatusSummary() string {
	var codes []int
	for c := range r.Statuses {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", r.Statuses[c], c))
	}
	return strings.Join(parts, ", ")
}

// Summary is a one-line human summary.
func (r Result) Summary() string {
	return fmt.Sprintf("%d requests in %v: %.0f req/s, p50 %v, p90 %v, p99 %v, max %v; %s",
		len(r.Latencies), r.Duration.Round(time.Millisecond), r.RPS(),
		r.Percentile(50).Round(time.Microsecond), r.Percentile(90).Round(time.Microsecond),
		r.Percentile(99).Round(time.Microsecond), r.Percentile(100).Round(time.Microsecond), r.StatusSummary())
}

// Second is one second of a run, for plots.
type Second struct {
	At       int // seconds since the start
	Requests int
	P50, P99 time.Duration
}

// Timeline buckets the requests by the second they started in.
func (r Result) Timeline() []Second {
	buckets := map[int][]time.Duration{}
	last := 0
	for _, o := range r.Outcomes {
		s := int(o.Start / time.Second)
		buckets[s] = append(buckets[s], o.Latency)
		last = max(last, s)
	}
	out := make([]Second, 0, last+1)
	for s := 0; s <= last; s++ {
		l := buckets[s]
		slices.Sort(l)
		sec := Second{At: s, Requests: len(l)}
		if len(l) > 0 {
			sec.P50, sec.P99 = l[(len(l)-1)/2], l[(len(l)-1)*99/100]
		}
		out = append(out, sec)
	}
	return out
}
