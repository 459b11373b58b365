package peers

import "github.com/prometheus/client_golang/prometheus"

// metrics say how many replicas this one sees, what handing claims over
// cost, and what keeping the list costs storage.
type metrics struct {
	replicas  prometheus.Gauge
	forwards  *prometheus.CounterVec
	heartbeat prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		replicas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "velvetrope_peer_replicas",
			Help: "Live replicas of this campaign's fleet that this replica sees, itself included (0 or 1: it writes every claim itself).",
		}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "velvetrope_peer_forwards_total",
			Help: "Claims handed to the replica that writes their code's claims: answered, or unanswered (written here instead).",
		}, []string{"result"}),
		heartbeat: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "velvetrope_peer_heartbeat_duration_seconds",
			Help:    "One announcement of this replica and one read of the others (two storage operations).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for _, c := range []prometheus.Collector{m.replicas, m.forwards, m.heartbeat} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.forwards.WithLabelValues("answered")
	m.forwards.WithLabelValues("unanswered")
	return m, nil
}
