// Package redeemer is the HTTP face of a redeemer replica: routes, request
// decoding, the error table, rate limiting, metrics and health endpoints.
//
// It never imports the MongoDB driver; redemptions go through the Redeemer
// interface (implemented by internal/claim).
package redeemer

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Redeemer redeems codes and reports on them.
type Redeemer interface {
	Redeem(ctx context.Context, code string, email invite.Email, lang string) (invite.Outcome, error)
	Status(code string) (invite.PublicStatus, error)
	Ready() error
}

// Config is the HTTP-level configuration.
type Config struct {
	Folding        *invite.Folding // nil: invite.DefaultFolding, so a zero Config folds aliases
	MaxBodyBytes   int64           // larger bodies get 413 [4096]
	RateLimit      uint64          // redemption requests per RateInterval per client (IPv4 address, IPv6 /64); 0 disables
	RateInterval   time.Duration   // [1m]
	RateLimitKeys  int             // clients the rate limiter remembers; beyond, the least recently seen is forgotten [65536]
	TrustedProxies []netip.Prefix  // X-Forwarded-For is believed only from these
	Brands         Brands          // landing page look per campaign
}

// Server handles every route of a redeemer.
type Server struct {
	cfg      Config
	redeemer Redeemer
	log      logr.Logger
	metrics  *metrics
	limiter  *clientLimiter // nil: no rate limit
	brands   Brands
	csrf     *http.CrossOriginProtection
	pages    *pageCache
	mux      *http.ServeMux
	draining atomic.Bool

	served atomic.Int64 // requests answered on the players' port
	rateMu sync.Mutex   // Busy's last look at served
	rateAt time.Time
	rateN  int64
}

// crowdRate is the request rate, per second at one replica, from which
// players' requests are a crowd (Busy): a quarter of what docs/operations.md
// budgets per pod, and far above a trickle of players.
const crowdRate = 500

// Busy reports whether players' requests arrived at crowd rates since the
// previous call: work that can wait (mail) should, even while every answer
// comes from memory (a full code's crowd), so that the crowd has the CPU.
func (s *Server) Busy() bool {
	s.rateMu.Lock()
	defer s.rateMu.Unlock()
	now, n := time.Now(), s.served.Load()
	elapsed := now.Sub(s.rateAt).Seconds()
	busy := !s.rateAt.IsZero() && elapsed > 0 && float64(n-s.rateN)/elapsed >= crowdRate
	s.rateAt, s.rateN = now, n
	return busy
}

// NewServer returns the redeemer's handler. reg receives the HTTP metrics;
// MetricsHandler serves them on a listener of their own.
func NewServer(cfg Config, r Redeemer, reg prometheus.Registerer, log logr.Logger) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4096
	}
	if cfg.Folding == nil {
		f := invite.DefaultFolding
		cfg.Folding = &f
	}
	if cfg.RateInterval <= 0 {
		cfg.RateInterval = time.Minute
	}
	if cfg.RateLimitKeys <= 0 {
		cfg.RateLimitKeys = 65536
	}
	var lim *clientLimiter
	if cfg.RateLimit > 0 {
		var err error
		if lim, err = newClientLimiter(cfg.RateLimit, cfg.RateInterval, cfg.RateLimitKeys); err != nil {
			return nil, err
		}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if cfg.Brands.Default.Title == "" && cfg.Brands.Default.Accent == "" {
		cfg.Brands.Default = DefaultBranding
	}
	if err := cfg.Brands.Validate(); err != nil {
		return nil, fmt.Errorf("branding: %w", err)
	}
	s := &Server{cfg: cfg, redeemer: r, log: log, metrics: m, limiter: lim, brands: cfg.Brands,
		csrf: http.NewCrossOriginProtection(), mux: http.NewServeMux(), pages: newPageCache()}
	s.routes()
	return s, nil
}

// ServeHTTP answers a path that is not clean (dot segments, double or
// trailing slashes) with 404 itself: ServeMux would redirect it, and no
// redemption URL is ever spelt that way.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; p == "" || p[0] != '/' || (p != "/" && path.Clean(p) != p) {
		s.problem(w, r, errNotFound)
		return
	}
	if s.draining.Load() {
		// Close each connection right after its answer, so no client keeps
		// one that Shutdown would close under its next request. (Closing
		// idle connections at once instead races with a client that is
		// just reusing one, and a POST is not retried by HTTP clients.)
		w.Header().Set("Connection", "close")
	}
	s.mux.ServeHTTP(w, r)
}

// Drain turns /readyz false so load balancers stop sending new requests,
// while requests already routed here are still served, each on a connection
// closed after its answer.
func (s *Server) Drain() { s.draining.Store(true) }

// Close releases what the server holds. Today that is nothing: the rate
// limiter forgets idle clients while it serves requests, without a goroutine
// of its own. Callers close the server so that this can change.
func (s *Server) Close() error { return nil }
