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
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Store is the storage the service needs.
type Store interface {
	Invitations(ctx context.Context) ([]invite.Invitation, error)
	// InvitationsVersion changes whenever an invitation is written.
	InvitationsVersion(ctx context.Context) (string, error)
	// Occupants returns what every slot of code holds: redemptions and
	// closed slots.
	Occupants(ctx context.Context, code string) ([]invite.Occupant, error)
	// Tallies sums the slot documents of every code (invite.Tally).
	Tallies(ctx context.Context) (map[string]invite.Tally, error)
	Claim(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult
	// ExplainEmails says who holds the emails of claims that Claim
	// answered invite.ClaimEmailConflict.
	ExplainEmails(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult
	// RecordHolders notes claims that took their slots, so that
	// ExplainEmails and HintedHolders find them cheaply (best effort).
	RecordHolders(ctx context.Context, claims []invite.Redemption)
	// HintedHolders answers the claims whose person is known to hold a
	// slot (ClaimEmailTaken), leaving the others' results zero.
	HintedHolders(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult
	// Lease asks for blocks of code's slots for holder, granting those
	// nobody leased within ttl (a hint that keeps replicas apart).
	Lease(ctx context.Context, code string, blocks []int, holder string, ttl time.Duration) ([]bool, error)
}

// Config tunes the service; zero fields take the defaults in brackets.
type Config struct {
	BatchSize     int           // claims per insert [128]
	Parallel      int           // inserts in flight per code [2]
	MaxPending    int           // requests waiting for storage [1024]
	AdmissionWait time.Duration // how long a request may wait for a pending place [250ms]
	PollInterval  time.Duration // invitations' version polled; invitations reloaded when it changed [1s]
	FullPoll      time.Duration // invitations reloaded even when the version did not change (hand edits) [1m]
	UsageInterval time.Duration // usage tallies reload: how soon a revocation is seen [5s]
	ReloadEvery   time.Duration // least time between slot reloads of a code [100ms]
	WriteTimeout  time.Duration // one batch or reload [5s]
	RedeemTimeout time.Duration // one redemption, all its attempts included; above WriteTimeout [10s]
	MaxAttempts   int           // slots one request may try [16]
	LeaseTTL      time.Duration // another replica may take over a block of slots leased this long ago [30s]
	Campaign      string        // serve only this campaign's codes (a campaign's fleet loads only what it serves); empty: all
	// OnRedeemed is called, and must not block, after a batch wrote
	// redemptions: the mail dispatcher in the same process looks for their
	// emails at once instead of at its next, slowed, idle poll.
	OnRedeemed func()
	// Writers, when set, hands a claim this replica would write to the
	// replica that writes its code's claims (internal/peers), so that a
	// code's crowd is written by one replica however many serve it. Nil:
	// this replica writes every claim it gets.
	Writers Writers
	Now     func() time.Time
}

// Writers chooses which replica writes a code's claims.
type Writers interface {
	// Forward hands the claim to its writer and returns the answer;
	// handled is false when this replica is to write it.
	Forward(ctx context.Context, code string, email invite.Email, lang string) (out invite.Outcome, err error, handled bool)
	// Occupants is what the writer of code knows every slot holds
	// (OccupantsHere); ok is false when another replica is not the writer
	// or does not know.
	Occupants(ctx context.Context, code string) (occ []invite.Occupant, ok bool)
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
	setD(&c.FullPoll, time.Minute)
	setD(&c.UsageInterval, 5*time.Second)
	setD(&c.ReloadEvery, 100*time.Millisecond)
	setD(&c.LeaseTTL, 30*time.Second)
	setD(&c.WriteTimeout, 5*time.Second)
	setD(&c.RedeemTimeout, 2*c.WriteTimeout)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Service answers redemptions for every invitation in storage.
type Service struct {
	store Store
	cfg   Config
	log   logr.Logger
	id    string // this process, as a slot leaseholder

	// pending admits requests that wait for storage: one token each, taken
	// on entry and given back when the request leaves the queue (its client
	// left) or is answered (batch done), so the bound holds for requests
	// whose clients are gone too.
	pending chan struct{}

	mu      sync.RWMutex
	codes   map[string]*code
	invalid map[string]bool // invalid invitation documents already logged (poll goroutine only)
	// version and fullLoad: the invitations' version at the last reload of
	// them, and when it was (poll goroutine only).
	version  string
	fullLoad time.Time

	loaded     atomic.Bool
	closing    atomic.Bool
	handedOver atomic.Int64          // requests handed to their code's writer, not answered yet
	health     atomic.Pointer[error] // last storage failure; nil when healthy
	batches    sync.WaitGroup

	rngMu sync.Mutex
	rng   *mrand.Rand

	// holders waiting to be recorded as hints, and whether a write of
	// them is under way (see recordHolders).
	hintsMu      sync.Mutex
	hints        []invite.Redemption
	hintsWriting bool
}

// recordHolders records people who took a slot as hints (Store.RecordHolders)
// after their answers, so that a conflict on one of them at another replica
// is explained without a scan. One write at a time per replica, carrying
// everything that gathered meanwhile: every write competes for the
// database's write lock with the claims themselves.
func (s *Service) recordHolders(won []invite.Redemption) {
	s.hintsMu.Lock()
	defer s.hintsMu.Unlock()
	s.hints = append(s.hints, won...)
	if s.hintsWriting {
		return
	}
	s.hintsWriting = true
	s.batches.Add(1)
	go func() {
		defer s.batches.Done()
		for {
			s.hintsMu.Lock()
			batch := s.hints
			s.hints = nil
			if len(batch) == 0 {
				s.hintsWriting = false
				s.hintsMu.Unlock()
				return
			}
			s.hintsMu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
			s.store.RecordHolders(ctx, batch)
			cancel()
		}
	}()
}

// New returns a Service; call Run to load and keep the view fresh.
func New(store Store, cfg Config, log logr.Logger) *Service {
	cfg.defaults()
	return &Service{
		store:   store,
		cfg:     cfg,
		log:     log,
		id:      newNonce(),
		pending: make(chan struct{}, cfg.MaxPending),
		codes:   map[string]*code{},
		invalid: map[string]bool{},
		rng:     mrand.New(mrand.NewPCG(mrand.Uint64(), mrand.Uint64())),
	}
}

// Ready reports whether this replica can serve: the invitations are loaded
// and it is not shutting down. A storage outage does not make it unready: it
// keeps answering what memory can (unknown, full, expired codes, holders'
// retries, the landing page) and gives writes 503 with Retry-After. Were it
// unready, every replica of every fleet would leave its Service at once and
// players would meet the ingress's bare 502.
func (s *Service) Ready() error {
	switch {
	case s.closing.Load():
		return errClosing
	case !s.loaded.Load():
		return errNotLoaded
	}
	return nil
}

func (s *Service) healthErr() error {
	if p := s.health.Load(); p != nil {
		return *p
	}
	return nil
}

// storageAnswered records that storage answered a poll.
func (s *Service) storageAnswered() {
	if s.health.Swap(nil) != nil {
		s.log.Info("Storage answers again")
	}
}

// storageFailed records an unknown outcome. Until the next poll succeeds,
// writes are answered 503 at once instead of each waiting for its timeout.
func (s *Service) storageFailed(err error) {
	if errors.Is(err, invite.ErrUnavailable) && s.health.Swap(&err) == nil {
		s.log.Error(err, "Storage is failing; writes answer 503 until a poll succeeds", "reason", invite.UnavailableReason(err))
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

// Redeem lets email take a slot of the code named codeName. The person comes
// first: someone who holds a slot of the code hears AlreadyRedeemed whatever
// the code's state. A redemption has one deadline, RedeemTimeout, for all its
// attempts; past it the outcome is unknown (503) and a retry tells.
//
// What memory cannot answer is written here or, with Config.Writers, by the
// replica that writes the code's claims.
func (s *Service) Redeem(ctx context.Context, codeName string, email invite.Email, lang string) (invite.Outcome, error) {
	return s.redeem(ctx, codeName, email, lang, s.cfg.Writers)
}

// RedeemHere is Redeem written by this replica, whoever the writer: for
// claims another replica handed over, which are never handed on.
func (s *Service) RedeemHere(ctx context.Context, codeName string, email invite.Email, lang string) (invite.Outcome, error) {
	return s.redeem(ctx, codeName, email, lang, nil)
}

func (s *Service) redeem(ctx context.Context, codeName string, email invite.Email, lang string, writers Writers) (invite.Outcome, error) {
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
	out, err, ok := s.fromMemoryLocked(c, email)
	c.mu.Unlock()
	if ok {
		return out, err
	}

	// One deadline for the redemption, wherever it is written.
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RedeemTimeout)
	defer cancel()
	if writers != nil {
		s.handedOver.Add(1)
		out, err, handled := writers.Forward(ctx, codeName, email, lang)
		s.handedOver.Add(-1)
		if handled {
			if errors.Is(err, invite.ErrExhausted) {
				// The writer filled the code: read it, so that this
				// replica answers the rest of the crowd from memory
				// instead of handing every request over.
				c.mu.Lock()
				if !c.complete || !c.view.full(c.inv.MaxUses) {
					s.reloadLocked(c)
				}
				c.mu.Unlock()
			}
			return out, err
		}
	}
	if err := s.healthErr(); err != nil {
		return 0, err
	}
	if err := s.admit(ctx); err != nil {
		return 0, err
	}
	deadline, _ := ctx.Deadline()
	r := &request{email: email, lang: lang, nonce: newNonce(), arrived: s.cfg.Now(), deadline: deadline, done: make(chan answer, 1)}
	c.mu.Lock()
	r.elem = c.queue.PushBack(r)
	s.pumpLocked(c)
	c.mu.Unlock()

	select {
	case a := <-r.done:
		return a.out, a.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	s.leaveLocked(c, r)
	c.mu.Unlock()
	select {
	case a := <-r.done: // answered meanwhile: say so
		if a.err != errGone {
			return a.out, a.err
		}
	default:
	}
	// In a batch in flight, its claim may still land; a retry hears 200.
	// Its admission place comes back with the batch's answer.
	if ctx.Err() == context.DeadlineExceeded {
		return 0, errDeadline
	}
	return 0, ctx.Err()
}

// OccupantsHere is what this replica knows every slot of codeName holds,
// when it knows for certain (ok): its view holds every document of the code
// and no revocation is suspected. The code's writer answers it to the other
// replicas of the fleet, which read it instead of storage to answer a full
// code's crowd from memory: the writer's view changes in memory, while
// storage is busiest with that very crowd. It is as true as the writer's
// own answers from memory.
func (s *Service) OccupantsHere(codeName string) ([]invite.Occupant, bool) {
	c := s.lookup(codeName)
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.view == nil || !c.complete || c.suspect || c.loading {
		return nil, false
	}
	return c.view.occupants(), true
}

// leaveLocked takes r out when its client has left. Queued or following
// another request, it leaves now, and so does its admission place; the same
// person asking again behind it takes its place. In a batch in flight it
// stays (its claim may land) and its place comes back with the answer; it is
// not tried again.
func (s *Service) leaveLocked(c *code, r *request) {
	r.gone = true
	switch {
	case r.leader != nil:
		// A follower writes nothing: it leaves its leader's list now.
		l := r.leader
		l.followers = slices.DeleteFunc(l.followers, func(f *request) bool { return f == r })
		r.leader = nil
		s.release()
	case r.elem != nil:
		if next := s.abandonLocked(r); next != nil {
			next.elem = c.queue.InsertBefore(next, r.elem)
		}
		c.queue.Remove(r.elem)
		r.elem = nil
	}
}

// admit bounds how many requests wait for storage; past the bound a request
// waits AdmissionWait for a place and is then shed with ErrBusy. The place is
// given back by release, exactly once per admitted request.
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

func (s *Service) release() { <-s.pending }

// Busy reports whether requests are waiting for storage, here or at the
// writer they were handed to: a crowd is being answered, and work that can
// wait (mail) should.
func (s *Service) Busy() bool { return len(s.pending) > 0 || s.handedOver.Load() > 0 }

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
// replicas, errDeadline when its deadline passed; the outcome is unknown
// and the client may retry.
var (
	errAttempts = fmt.Errorf("%w: too many slot conflicts", invite.ErrUnavailable)
	errDeadline = fmt.Errorf("%w: the redemption's deadline passed", invite.ErrUnavailable)
	errGone     = fmt.Errorf("%w: the client left", invite.ErrUnavailable)
)
