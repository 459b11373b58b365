package redeemer

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsHandler serves g's metrics at GET /metrics and nothing else (404).
// It is meant for a listener of its own (the redeemer's --metrics-addr): the
// players' port never answers scrapes, so an Ingress or a Service routing
// player traffic cannot expose them, and a NetworkPolicy can admit scrapers
// to this port alone.
func MetricsHandler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
	outcomes *prometheus.CounterVec
	// results are outcomes' series by result: both successes and every
	// problem code (see lazyCounter).
	results map[string]*lazyCounter
	// winners times the redemptions that took a place (201): the answer a
	// crowd's winners wait for, apart from the quick 410s around it.
	winners prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "velvetrope_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "velvetrope_http_request_duration_seconds",
			Help:    "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "velvetrope_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "velvetrope_redemption_outcomes_total",
			Help: "Redemption requests by result: redeemed, already-redeemed or a problem code.",
		}, []string{"result"}),
		winners: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "velvetrope_redemption_winner_duration_seconds",
			Help:    "Latency of the redemptions that took a place (201 Created).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inflight, m.outcomes, m.winners} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.results = map[string]*lazyCounter{}
	for _, result := range append([]string{"redeemed", "already-redeemed", internalProblem.code}, problemCodes()...) {
		m.results[result] = &lazyCounter{vec: m.outcomes, labels: []string{result}}
	}
	return m, nil
}

// lazyCounter is one series of a CounterVec, resolved on its first
// increment and kept. WithLabelValues hashes the label values and takes the
// vector's lock on every call, which a crowd pays on every request; a series
// resolved when the server starts would be exported as 0 before anything
// happened, so it is resolved on first use, as WithLabelValues would.
type lazyCounter struct {
	vec    *prometheus.CounterVec
	labels []string
	once   sync.Once
	c      prometheus.Counter
}

func (l *lazyCounter) Inc() {
	l.once.Do(func() { l.c = l.vec.WithLabelValues(l.labels...) })
	l.c.Inc()
}

// result counts a redemption by its result.
func (m *metrics) result(result string) {
	if c, ok := m.results[result]; ok {
		c.Inc()
		return
	}
	m.outcomes.WithLabelValues(result).Inc()
}

// outcome counts a failed redemption by its problem code.
func (m *metrics) outcome(err error) {
	k, _ := kindOf(err)
	m.result(k.code)
}

// instrument counts and times the requests of one route.
func (s *Server) instrument(route string, h http.Handler) http.Handler {
	duration := s.metrics.duration.WithLabelValues(route)
	// The route's request counters by status: every status the server
	// answers with; any other is looked up per request.
	requests := map[int]*lazyCounter{}
	for _, status := range append([]int{http.StatusOK, http.StatusCreated, http.StatusSeeOther, http.StatusNotModified,
		internalProblem.status}, problemStatuses()...) {
		requests[status] = &lazyCounter{vec: s.metrics.requests, labels: []string{route, strconv.Itoa(status)}}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.metrics.inflight.Inc()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		s.metrics.inflight.Dec()
		s.served.Add(1)
		took := time.Since(start).Seconds()
		duration.Observe(took)
		if rec.status == http.StatusCreated && route == "redeem" {
			s.metrics.winners.Observe(took)
		}
		if c, ok := requests[rec.status]; ok {
			c.Inc()
		} else {
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController and MaxBytesReader reach the real writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
