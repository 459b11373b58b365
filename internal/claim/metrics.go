package claim

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Instrument wraps store so every operation's latency and every batch's size
// are recorded in reg.
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
	}
	for _, c := range []prometheus.Collector{s.duration, s.batch} {
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
}

func (s *instrumented) observe(op string, start time.Time) {
	s.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (s *instrumented) Invitations(ctx context.Context) ([]invite.Invitation, error) {
	defer s.observe("invitations", time.Now())
	return s.Store.Invitations(ctx)
}

func (s *instrumented) SlotHolders(ctx context.Context, code string) ([]invite.Redemption, error) {
	defer s.observe("slot_holders", time.Now())
	return s.Store.SlotHolders(ctx, code)
}

func (s *instrumented) Used(ctx context.Context, code string) (int, error) {
	defer s.observe("used", time.Now())
	return s.Store.Used(ctx, code)
}

func (s *instrumented) Claim(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	defer s.observe("claim", time.Now())
	s.batch.Observe(float64(len(claims)))
	return s.Store.Claim(ctx, claims)
}
