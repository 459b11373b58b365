// Package loadgen fires a flash crowd of redemption requests at redeemers and
// audits the result in storage. make bench and the load tool use it; it
// speaks HTTP to any deployment and never imports the MongoDB driver.
package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one crowd.
type Config struct {
	Targets     []string // base URLs, used round-robin
	Code        string
	Requests    int
	Concurrency int
	// Email returns the email of request i; "" sends an empty body.
	Email func(i int) string
}

// Result is what the crowd saw.
type Result struct {
	Duration  time.Duration
	Latencies []time.Duration // sorted
	Statuses  map[int]int     // by HTTP status; 0 counts transport errors
	// Answered holds the email of every request answered 201, and Repeated
	// of every one answered 200.
	Answered, Repeated []string
	// LastCreated is when, after the start, the last 201 came back: how
	// long the code took to be exhausted when the crowd exhausts it.
	LastCreated time.Duration
}

// Run fires cfg.Requests requests from cfg.Concurrency closed-loop clients.
func Run(ctx context.Context, cfg Config) Result {
	transport := &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	var next atomic.Int64
	var mu sync.Mutex
	res := Result{Statuses: map[int]int{}, Latencies: make([]time.Duration, 0, cfg.Requests)}
	start := time.Now()
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= cfg.Requests {
					return
				}
				email := cfg.Email(i)
				t0 := time.Now()
				status := post(ctx, client, cfg.Targets[i%len(cfg.Targets)]+"/invitations/"+cfg.Code, email)
				lat := time.Since(t0)
				mu.Lock()
				res.Latencies = append(res.Latencies, lat)
				res.Statuses[status]++
				switch status {
				case http.StatusCreated:
					res.Answered = append(res.Answered, email)
					res.LastCreated = max(res.LastCreated, time.Since(start))
				case http.StatusOK:
					res.Repeated = append(res.Repeated, email)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Duration = time.Since(start)
	slices.Sort(res.Latencies)
	return res
}

func post(ctx context.Context, c *http.Client, url, email string) int {
	body, _ := json.Marshal(map[string]string{"email": email})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// RPS is requests per second over the whole run.
func (r Result) RPS() float64 { return float64(len(r.Latencies)) / r.Duration.Seconds() }

// Percentile returns the p-th (0..100) latency.
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p / 100)
	return r.Latencies[i]
}

// Summary is a one-line human summary.
func (r Result) Summary() string {
	var codes []int
	for c := range r.Statuses {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", r.Statuses[c], c))
	}
	return fmt.Sprintf("%d requests in %v: %.0f req/s, p50 %v, p99 %v, max %v; %s",
		len(r.Latencies), r.Duration.Round(time.Millisecond), r.RPS(),
		r.Percentile(50).Round(time.Microsecond), r.Percentile(99).Round(time.Microsecond),
		r.Percentile(100).Round(time.Microsecond), strings.Join(parts, ", "))
}
