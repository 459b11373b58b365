// Package peers makes the replicas of a campaign's fleet agree, without
// talking to each other about it, on which one writes each code's claims:
// every replica announces itself in storage, reads who else is alive, and
// picks a code's writer by rendezvous hashing of the code over the live
// replicas. A replica that is not the writer hands the claim to it. A
// code's crowd is then written by one replica, as if there were only one:
// its slots are filled without collisions, and the same person's second
// request (a double submit, another spelling) rides along with the first
// instead of racing it in storage. Codes spread over the replicas.
//
// It is a routing hint, never a guarantee: while replicas come and go their
// lists differ for a moment and two of them may write the same code, and
// then storage's unique keys decide, as they always do.
package peers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/fnv"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Store is where replicas announce themselves (internal/mongostore).
type Store interface {
	Announce(ctx context.Context, id, campaign, addr string) error
	Withdraw(ctx context.Context, id string) error
	// Replicas returns the replicas of campaign announced since then: id to
	// address.
	Replicas(ctx context.Context, campaign string, since time.Time) (map[string]string, error)
}

// Client hands a claim to the replica at addr (internal/redeemer's
// PeerClient). answered is false when no answer came back (the replica is
// gone, or the connection broke): the caller writes the claim itself, and
// storage's unique keys make that safe whatever the other replica did.
type Client interface {
	Redeem(ctx context.Context, addr, code string, email invite.Email, lang string) (out invite.Outcome, err error, answered bool)
	// Occupants asks the replica at addr what code's slots hold; ok is
	// false when it does not know for certain, or did not answer.
	Occupants(ctx context.Context, addr, code string) (occ []invite.Occupant, ok bool)
}

// Config tunes the membership; zero fields take the defaults in brackets.
type Config struct {
	ID        string        // this process [hostname, pid and random bytes]
	Campaign  string        // the fleet's campaign: replicas of one campaign choose among themselves
	Addr      string        // where peers reach this replica (required)
	Heartbeat time.Duration // how often this replica announces itself and reads the others [2s]
	Stale     time.Duration // a replica not heard from this long is left out [5 heartbeats]
	DownFor   time.Duration // a replica that did not answer is left out this long [5s]
	Now       func() time.Time
}

func (c *Config) defaults() {
	if c.ID == "" {
		c.ID = processID()
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 2 * time.Second
	}
	if c.Stale <= 0 {
		c.Stale = 5 * c.Heartbeat
	}
	if c.DownFor <= 0 {
		c.DownFor = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Members is this replica's view of its fleet. Its Forward implements
// claim.Writers.
type Members struct {
	store   Store
	client  Client
	cfg     Config
	log     logr.Logger
	metrics *metrics

	live      atomic.Pointer[[]*member] // sorted by id; nil or one: nothing to choose
	withdrawn atomic.Bool

	mu   sync.Mutex // serializes announcing and withdrawing
	seen time.Time  // last successful read of the replicas (under mu)
}

// member is one live replica.
type member struct {
	id, addr  string
	seed      uint64       // hash of id, mixed with each code's
	downUntil atomic.Int64 // unix nanoseconds; it did not answer
}

// New returns the membership of the replica cfg describes, its metrics
// registered in reg; Run keeps it.
func New(store Store, client Client, cfg Config, reg prometheus.Registerer, log logr.Logger) (*Members, error) {
	cfg.defaults()
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Members{store: store, client: client, cfg: cfg, metrics: m, log: log}, nil
}

// ID is this replica's id among its peers.
func (m *Members) ID() string { return m.cfg.ID }

// Addr is where peers reach this replica.
func (m *Members) Addr() string { return m.cfg.Addr }

// Run announces this replica while ready says it may take claims, and reads
// the others, every Heartbeat until ctx ends or Withdraw.
func (m *Members) Run(ctx context.Context, ready func() error) {
	t := time.NewTicker(m.cfg.Heartbeat)
	defer t.Stop()
	for {
		m.refresh(ctx, ready() == nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Members) refresh(ctx context.Context, ready bool) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.withdrawn.Load() {
		return
	}
	start := time.Now()
	defer func() { m.metrics.heartbeat.Observe(time.Since(start).Seconds()) }()
	if ready {
		if err := m.store.Announce(ctx, m.cfg.ID, m.cfg.Campaign, m.cfg.Addr); err != nil {
			m.log.V(1).Info("Could not announce this replica", "err", err.Error())
		}
	}
	now := m.cfg.Now()
	found, err := m.store.Replicas(ctx, m.cfg.Campaign, now.Add(-m.cfg.Stale))
	if err != nil {
		if now.Sub(m.seen) > m.cfg.Stale {
			// Unheard of for long: write everything here rather than hand
			// claims to replicas that may be gone.
			m.set(nil)
		}
		m.log.V(1).Info("Could not read the other replicas", "err", err.Error())
		return
	}
	m.seen = now
	m.set(found)
}

// set replaces the live list, keeping what is known of replicas that stay.
func (m *Members) set(found map[string]string) {
	old := map[string]*member{}
	if p := m.live.Load(); p != nil {
		for _, r := range *p {
			old[r.id] = r
		}
	}
	list := make([]*member, 0, len(found))
	for id, addr := range found {
		r := old[id]
		if r == nil || r.addr != addr {
			r = &member{id: id, addr: addr, seed: hashString(id)}
		}
		list = append(list, r)
	}
	slices.SortFunc(list, func(a, b *member) int { return strings.Compare(a.id, b.id) })
	m.live.Store(&list)
	m.metrics.replicas.Set(float64(len(list)))
}

// Withdraw stops announcing this replica and removes its announcement, so
// that peers stop handing it claims: the start of a drain. Claims already
// handed to it are still answered until its peer server shuts down.
func (m *Members) Withdraw(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.withdrawn.Swap(true) {
		return
	}
	if err := m.store.Withdraw(ctx, m.cfg.ID); err != nil {
		m.log.Info("Could not withdraw this replica; peers leave it out once it is stale", "err", err.Error())
	}
}

// Forward hands the claim to the replica that writes code's claims, and
// returns its answer. handled is false when this replica should write the
// claim: it is the writer, it knows no other replica, or the writer did not
// answer (left out for DownFor, so a dead replica costs one failed attempt).
func (m *Members) Forward(ctx context.Context, code string, email invite.Email, lang string) (out invite.Outcome, err error, handled bool) {
	w := m.writer(code)
	if w == nil || w.id == m.cfg.ID {
		return 0, nil, false
	}
	out, err, answered := m.client.Redeem(ctx, w.addr, code, email, lang)
	if !answered {
		if ctx.Err() == nil {
			w.downUntil.Store(m.cfg.Now().Add(m.cfg.DownFor).UnixNano())
		}
		m.metrics.forwards.WithLabelValues("unanswered").Inc()
		return 0, nil, false
	}
	m.metrics.forwards.WithLabelValues("answered").Inc()
	return out, err, true
}

// Occupants asks code's writer what the code's slots hold, when it is
// another replica (see claim.Service.OccupantsHere).
func (m *Members) Occupants(ctx context.Context, code string) ([]invite.Occupant, bool) {
	w := m.writer(code)
	if w == nil || w.id == m.cfg.ID {
		return nil, false
	}
	return m.client.Occupants(ctx, w.addr, code)
}

// writer picks the live replica with the highest score for code
// (rendezvous hashing): every replica with the same list picks the same one,
// and a replica joining or leaving moves only the codes it wins or held.
func (m *Members) writer(code string) *member {
	p := m.live.Load()
	if p == nil || len(*p) < 2 {
		return nil
	}
	h := hashString(code)
	now := m.cfg.Now().UnixNano()
	var best *member
	var bestScore uint64
	for _, r := range *p {
		if r.id != m.cfg.ID && r.downUntil.Load() > now {
			continue
		}
		if s := mix(h ^ r.seed); best == nil || s > bestScore {
			best, bestScore = r, s
		}
	}
	return best
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// mix is SplitMix64's finalizer: FNV's low-entropy high bits would otherwise
// let one replica win most comparisons.
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// processID names this process among its peers: unique even when a pod's
// hostname comes back after a restart.
func processID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}
