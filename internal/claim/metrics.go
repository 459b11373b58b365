package claim

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Instrument wraps store so every operation's latency, every batch's size
// and every storage failure (by reason: see invite.UnavailableError) are
// recorded in reg; an outage shows as a rising failure count.
func Instrument(store Store, reg prometheus.Registerer) (Store, error) {
	s := &instrumented{
		Store: store,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "velvetrope_store_operation_duration_seconds",
			Help:    "Latency of storage operations by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"op"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "velvetrope_store_claim_batch_size",
			Help:    "Slot claims written per insert.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "velvetrope_store_claim_results_total",
			Help: "Slot claims by what storage said: inserted, slot-taken, slot-closed, email-taken, retry or failed. Conflicts cost the test bed a row-by-row redo of their batch.",
		}, []string{"result"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "velvetrope_store_failures_total",
			Help: "Storage operations that failed, by operation and reason (network, timeout, not-primary, write-concern, other).",
		}, []string{"op", "reason"}),
	}
	for _, c := range []prometheus.Collector{s.duration, s.batch, s.results, s.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

type instrumented struct {
	Store
	duration *prometheus.HistogramVec
	batch    prometheus.Histogram
	results  *prometheus.CounterVec
	failures *prometheus.CounterVec
}

var claimResults = map[invite.ClaimStatus]string{
	invite.ClaimInserted: "inserted", invite.ClaimSlotTaken: "slot-taken", invite.ClaimSlotClosed: "slot-closed",
	invite.ClaimEmailTaken: "email-taken", invite.ClaimRetry: "retry", invite.ClaimFailed: "failed",
}

func (s *instrumented) observe(op string, start time.Time, err error) {
	s.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		reason := invite.UnavailableReason(err)
		if reason == "" {
			reason = "definite"
		}
		s.failures.WithLabelValues(op, reason).Inc()
	}
}

func (s *instrumented) Invitations(ctx context.Context) (_ []invite.Invitation, err error) {
	defer func(start time.Time) { s.observe("invitations", start, err) }(time.Now())
	return s.Store.Invitations(ctx)
}

func (s *instrumented) InvitationsVersion(ctx context.Context) (_ string, err error) {
	defer func(start time.Time) { s.observe("invitations_version", start, err) }(time.Now())
	return s.Store.InvitationsVersion(ctx)
}

func (s *instrumented) Occupants(ctx context.Context, code string) (_ []invite.Occupant, err error) {
	defer func(start time.Time) { s.observe("occupants", start, err) }(time.Now())
	return s.Store.Occupants(ctx, code)
}

func (s *instrumented) Tallies(ctx context.Context) (_ map[string]invite.Tally, err error) {
	defer func(start time.Time) { s.observe("tallies", start, err) }(time.Now())
	return s.Store.Tallies(ctx)
}

func (s *instrumented) Claim(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	start := time.Now()
	s.batch.Observe(float64(len(claims)))
	results := s.Store.Claim(ctx, claims)
	s.observe("claim", start, s.count(results))
	return results
}

func (s *instrumented) ExplainEmails(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	start := time.Now()
	results := s.Store.ExplainEmails(ctx, claims)
	s.observe("explain_emails", start, s.count(results))
	return results
}

func (s *instrumented) HintedHolders(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	start := time.Now()
	results := s.Store.HintedHolders(ctx, claims)
	s.observe("hinted_holders", start, s.count(results))
	return results
}

func (s *instrumented) RecordHolders(ctx context.Context, claims []invite.Redemption) {
	defer func(start time.Time) { s.observe("record_holders", start, nil) }(time.Now())
	s.Store.RecordHolders(ctx, claims)
}

func (s *instrumented) Lease(ctx context.Context, code string, blocks []int, holder string, ttl time.Duration) (_ []bool, err error) {
	defer func(start time.Time) { s.observe("lease", start, err) }(time.Now())
	return s.Store.Lease(ctx, code, blocks, holder, ttl)
}

// count counts results by status, but not a conflict left for
// ExplainEmails, whose own result counts it, nor one HintedHolders left
// unanswered, and returns the first failure:
// one per call, as a call is one operation.
func (s *instrumented) count(results []invite.ClaimResult) (err error) {
	for _, r := range results {
		if r.Status != invite.ClaimEmailConflict && r.Status != 0 {
			s.results.WithLabelValues(claimResults[r.Status]).Inc()
		}
		if r.Status == invite.ClaimFailed && err == nil {
			err = r.Err
		}
	}
	return err
}
