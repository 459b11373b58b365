// Package claim turns concurrent redemption requests into batched slot-claim
// writes, guided by an in-memory view of every invitation and of the slots
// taken, so that one replica answers a flash crowd with a few large inserts
// and rejects what it can from memory.
//
// Safety never depends on this view: storage's unique keys decide. The view
// only chooses which slot to try and answers what it knows for certain
// (unknown, paused, expired, revoked, full, "you already hold a slot").
// It imports the domain and logr only; storage comes in through Store.
package claim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Store is the storage the service needs.
type Store interface {
	Invitations(ctx context.Context) ([]invite.Invitation, error)
	// SlotHolders returns the slot and canonical email of every redemption of code.
	SlotHolders(ctx context.Context, code string) ([]invite.Redemption, error)
	Used(ctx context.Context, code string) (int, error)
	Claim(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult
}

// Config tunes the service; zero fields take the defaults in brackets.
type Config struct {
	BatchSize     int           // claims per insert [128]
	Parallel      int           // inserts in flight per code [2]
	MaxPending    int           // requests waiting for storage [1024]
	AdmissionWait time.Duration // how long a request may wait for a pending place [250ms]
	PollInterval  time.Duration // invitations reload [1s]
	UsageInterval time.Duration // usage counts reload [5s]
	ReloadEvery   time.Duration // least time between slot reloads of a code [100ms]
	WriteTimeout  time.Duration // one batch or reload [5s]
	MaxAttempts   int           // slots one request may try [16]
	Now           func() time.Time
}

func (c *Config) defaults() {
	set := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	set(&c.BatchSize, 128)
	set(&c.Parallel, 2)
	set(&c.MaxPending, 1024)
	set(&c.MaxAttempts, 16)
	setD(&c.AdmissionWait, 250*time.Millisecond)
	setD(&c.PollInterval, time.Second)
	setD(&c.UsageInterval, 5*time.Second)
	setD(&c.ReloadEvery, 100*time.Millisecond)
	setD(&c.WriteTimeout, 5*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Service answers redemptions for every invitation in storage.
type Service struct {
	store Store
	cfg   Config
	log   logr.Logger

	pending chan struct{} // admission: one token per request waiting for storage

	mu      sync.RWMutex
	codes   map[string]*code
	invalid map[string]bool // invalid invitation documents already logged (poll goroutine only)

	loaded  atomic.Bool
	closing atomic.Bool
	health  atomic.Pointer[error] // last storage failure; nil when healthy
	batches sync.WaitGroup

	rngMu sync.Mutex
	rng   *mrand.Rand
}

// New returns a Service; call Run to load and keep the view fresh.
func New(store Store, cfg Config, log logr.Logger) *Service {
	cfg.defaults()
	return &Service{
		store:   store,
		cfg:     cfg,
		log:     log,
		pending: make(chan struct{}, cfg.MaxPending),
		codes:   map[string]*code{},
		invalid: map[string]bool{},
		rng:     mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())),
	}
}

// Ready reports whether the service can take redemptions: the invitations are
// loaded and storage answered last time it was asked.
func (s *Service) Ready() error {
	if !s.loaded.Load() {
		return errNotLoaded
	}
	return s.healthErr()
}

func (s *Service) healthErr() error {
	if p := s.health.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Service) setHealth(err error) {
	if err == nil {
		if s.health.Swap(nil) != nil {
			s.log.Info("Storage is reachable again")
		}
		return
	}
	if errors.Is(err, invite.ErrUnavailable) && s.health.Swap(&err) == nil {
		s.log.Error(err, "Storage is unreachable; answering 503 until it is back")
	}
}

// Status returns the public status of a code from memory.
func (s *Service) Status(codeName string) (invite.PublicStatus, error) {
	if !s.loaded.Load() {
		return invite.PublicStatus{}, errNotLoaded
	}
	c := s.lookup(codeName)
	if c == nil {
		return invite.PublicStatus{}, invite.ErrUnknownCode
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inv.Status(s.cfg.Now(), c.usedLocked()), nil
}

// Redeem lets email take a slot of the code named codeName.
func (s *Service) Redeem(ctx context.Context, codeName string, email invite.Email, lang string) (invite.Outcome, error) {
	switch {
	case s.closing.Load():
		return 0, errClosing
	case !s.loaded.Load():
		return 0, errNotLoaded // never "unknown code" just because we have not looked yet
	}
	c := s.lookup(codeName)
	if c == nil {
		return 0, invite.ErrUnknownCode
	}
	c.mu.Lock()
	if _, ok := c.view.holders[email.Canonical]; ok {
		c.mu.Unlock()
		return invite.AlreadyRedeemed, nil
	}
	err := c.inv.Open(s.cfg.Now(), c.usedLocked())
	knowsAll := c.loadedLocked() && c.view.knowsAllHolders(c.inv.MaxUses)
	c.mu.Unlock()
	// "Full" is answered from memory only when every holder is known;
	// otherwise a holder retrying after a timeout could hear 410, not 200.
	if err != nil && !(errors.Is(err, invite.ErrExhausted) && !knowsAll) {
		return 0, err
	}
	if err := s.healthErr(); err != nil {
		return 0, err
	}

	if err := s.admit(ctx); err != nil {
		return 0, err
	}
	defer func() { <-s.pending }()

	r := &request{email: email, lang: lang, nonce: newNonce(), done: make(chan answer, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, r)
	s.pumpLocked(c)
	c.mu.Unlock()

	select {
	case a := <-r.done:
		return a.out, a.err
	case <-ctx.Done():
		// The claim may still land; the client retries and hears 200.
		r.abandoned.Store(true)
		return 0, ctx.Err()
	}
}

// admit bounds how many requests wait for storage; past the bound a request
// waits AdmissionWait for a place and is then shed with ErrBusy.
func (s *Service) admit(ctx context.Context) error {
	select {
	case s.pending <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(s.cfg.AdmissionWait)
	defer t.Stop()
	select {
	case s.pending <- struct{}{}:
		return nil
	case <-t.C:
		return invite.ErrBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait blocks until every batch in flight has its answer from storage, so a
// shutting-down replica does not abandon writes halfway.
func (s *Service) Wait() { s.batches.Wait() }

// Stop refuses new redemptions (503) and answers queued ones, then waits for
// the batches in flight. Taking every code's lock after setting closing is a
// barrier: a pump that saw closing false has already counted its batch, so
// Wait cannot miss it.
func (s *Service) Stop() {
	s.closing.Store(true)
	for _, c := range s.allCodes() {
		c.mu.Lock()
		s.pumpLocked(c)
		c.mu.Unlock()
	}
	s.batches.Wait()
}

// allCodes snapshots the codes, so callers can lock each without holding s.mu.
func (s *Service) allCodes() []*code {
	s.mu.RLock()
	defer s.mu.RUnlock()
	codes := make([]*code, 0, len(s.codes))
	for _, c := range s.codes {
		codes = append(codes, c)
	}
	return codes
}

func (s *Service) lookup(name string) *code {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.codes[name]
}

func (s *Service) intn(n int) int {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.IntN(n)
}

func newNonce() string {
	b := make([]byte, 12)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var (
	errNotLoaded = fmt.Errorf("%w: invitations not loaded yet", invite.ErrUnavailable)
	errClosing   = fmt.Errorf("%w: shutting down", invite.ErrUnavailable)
)

// errAttempts is returned when a request kept losing its slot to other
// replicas; the client may retry.
var errAttempts = fmt.Errorf("%w: too many slot conflicts", invite.ErrUnavailable)
