package claim

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// code is the state of one invitation in this replica.
type code struct {
	mu  sync.Mutex
	inv invite.Invitation

	tally invite.Tally // storage's, at the last usage poll
	view  *slotView    // this replica's picture of the slots; nil until first loaded
	// complete: the view held every document of the code's slots when it
	// was loaded, and nothing since has shown otherwise (a conflict with
	// another replica, an unknown outcome, a tally that differs). Answers
	// that need to know every holder ("full", "paused" to a person who may
	// hold a slot) come from memory only when it is true.
	complete  bool
	tallied   bool // tally was read from storage at least once
	signals   int  // incompleteness signals so far
	loadFrom  int  // signals when the running reload started: one since means it is not complete
	stale     int  // signals that the view may hold what storage no longer has (a subset of signals)
	staleFrom int  // stale when the running reload started: one since means read again
	// suspect: a stale signal came after the last reload began, so a holder
	// in the view may have been revoked: holders are not answered from
	// memory until a reload clears it. reloadWhenIdle: that reload waits
	// for the code to have nothing queued or in flight, so that a crowd is
	// not slowed by a read of every slot while it lasts.
	suspect        bool
	reloadWhenIdle bool
	loading        bool
	reloadSoon     bool // a reload is scheduled for when ReloadEvery has passed
	lastLoad       time.Time
	sinceLoad      []occupancy // slots seen occupied while a reload was reading storage

	queue    list.List // of *request, oldest first: a request leaves in O(1) when its client does
	inflight int
	sent     int                 // batches sent so far: a tally read while one was in flight may count it or not
	unjudged int                 // tally reads in a row not compared because of writes in flight (refreshTallies)
	byEmail  map[string]*request // requests in flight, so one person is never in two batches
	leasing  bool                // a lease request (Store.Lease) is in flight
	holding  bool                // a timer pumps again when the oldest request has waited twinHold

	// unexplained: requests whose claim met a duplicate its slot did not
	// explain (invite.ClaimEmailConflict), waiting for explainEmails to
	// read who holds their email; explaining: that read is running.
	unexplained []*request
	explaining  bool
	// lastEmailConflict: when a write of this replica last met a person who
	// already held a slot (invite.ClaimEmailConflict). Until checkHintsFor
	// has passed, batches look their people up in the holders hints before
	// writing (see send). Only this replica's own conflicts count: a
	// replica whose writes do not meet any pays no lookups.
	lastEmailConflict time.Time
}

// checkHintsFor is how long after an email conflict batches look their
// people up before writing: on a server that redoes a batch row by row when
// it meets a duplicate (the FerretDB test bed), one such person costs the
// whole batch, and where one came, more usually follow (a crowd's double
// submits and second spellings).
const checkHintsFor = 5 * time.Second

// twinHold: in that time, a request waits this long after it arrived before
// it is written, so that the same person's request at another replica,
// arriving at the same moment, has been written there and recorded as a
// hint by then: this one is then answered from the hint instead of making
// the batch meet a duplicate.
const twinHold = 100 * time.Millisecond

// request is one redemption waiting for its answer.
type request struct {
	email     invite.Email
	lang      string
	nonce     string
	slot      int // reserved for its batch in flight; -1 when none
	arrived   time.Time
	attempts  int
	deadline  time.Time
	elem      *list.Element // in code.queue; nil once taken out
	leader    *request      // while following another request of the same person
	gone      bool          // its client left
	done      chan answer   // buffered: answered exactly once, never blocks
	followers []*request    // the same person asking again while this was in flight
}

// occupancy is a slot seen occupied: by email, or closed when email is "".
type occupancy struct {
	slot  int
	email string
	tally int64
}

type answer struct {
	out invite.Outcome
	err error
}

func newCode(inv invite.Invitation) *code {
	return &code{inv: inv, byEmail: map[string]*request{}}
}

func (c *code) loadedLocked() bool { return c.view != nil }

// usedLocked is the best known usage: storage's at the last poll, or what
// this replica has seen taken since, whichever is higher.
func (c *code) usedLocked() int {
	if c.view == nil {
		return c.tally.Used()
	}
	return max(c.tally.Used(), c.view.taken)
}

// incompleteLocked records that other writers may hold slots the view does
// not know of.
func (c *code) incompleteLocked() {
	c.complete = false
	c.signals++
}

// staleLocked records that the view may hold what storage no longer has: a
// revoked holder, a reopened slot. Unlike other writers' new redemptions,
// which only ever add to what the view lacks, this makes a view wrong, so a
// reload reading meanwhile must read again.
func (c *code) staleLocked() {
	c.incompleteLocked()
	c.stale++
	c.suspect = true
}

// reloadStaleLocked reloads a view that may hold deleted documents: now if
// the code is idle, else once it is (see pumpLocked). Meanwhile nothing
// wrong is answered: a suspect view answers no holder from memory, and an
// incomplete one neither "full" nor "paused".
func (s *Service) reloadStaleLocked(c *code) {
	if c.view == nil {
		return // never loaded: it will be read when needed
	}
	c.reloadWhenIdle = true
	s.pumpLocked(c)
}

// fromMemoryLocked answers what the view knows for certain; ok is false when
// the request must go to storage (a write, or a reload first).
func (s *Service) fromMemoryLocked(c *code, email invite.Email) (out invite.Outcome, err error, ok bool) {
	if c.view != nil && !c.suspect {
		if _, held := c.view.holders[email.Canonical]; held {
			return invite.AlreadyRedeemed, nil, true
		}
	}
	if err := c.inv.Admits(s.cfg.Now()); err != nil {
		return 0, err, c.complete // they may hold a slot we do not know of
	}
	if c.complete && c.view.full(c.inv.MaxUses) {
		return 0, invite.ErrExhausted, true
	}
	return 0, nil, false
}

// reply answers r and everyone following it, and gives their admission
// places back.
func (s *Service) reply(r *request, out invite.Outcome, err error) {
	r.done <- answer{out, err}
	s.release()
	for _, f := range r.followers {
		if out == invite.Redeemed {
			out = invite.AlreadyRedeemed
		}
		f.done <- answer{out, err}
		f.leader = nil
		s.release()
	}
	r.followers = nil
}

// abandonLocked answers r, whose client left, and hands its place to the
// first of its followers (the same person asking again), whom it returns to
// stand where r stood; nil when nobody follows.
func (s *Service) abandonLocked(r *request) *request {
	var next *request
	if len(r.followers) > 0 {
		next, r.followers = r.followers[0], r.followers[1:]
		next.followers, r.followers = append(next.followers, r.followers...), nil
		next.leader = nil
		for _, f := range next.followers {
			f.leader = next
		}
	}
	s.reply(r, 0, errGone)
	return next
}

// pumpLocked starts batches while there are requests and room in flight. A
// batch starts at once when nothing is in flight (an idle code answers
// quickly); a further one only when a full batch is waiting, because requests
// that gather behind an insert in flight make the next insert larger, and the
// database's time goes to round trips, not to rows.
func (s *Service) pumpLocked(c *code) {
	defer func() {
		if c.reloadWhenIdle && c.inflight == 0 && c.queue.Len() == 0 && !c.explaining {
			c.reloadWhenIdle = false
			s.reloadLocked(c)
		}
	}()
	for c.inflight < s.cfg.Parallel && c.queue.Len() > 0 {
		if s.closing.Load() {
			for c.queue.Len() > 0 {
				s.reply(s.popLocked(c), 0, errClosing)
			}
			return
		}
		if c.inflight > 0 && c.queue.Len() < s.cfg.BatchSize {
			return
		}
		if !c.loadedLocked() {
			if !c.tallied || c.tally != 0 {
				s.reloadLocked(c)
				return // the reload pumps again when it is done
			}
			// Storage held nothing for this code at the last tally: a
			// fresh code, whose first crowd need not wait for a read that
			// would find nothing. The view starts empty and incomplete:
			// anything written since the tally shows up as a conflict,
			// and what needs every holder loads it first.
			c.view = newSlotView(max(c.inv.MaxUses, 1))
			c.incompleteLocked()
		}
		s.leaseAheadLocked(c)
		batch, wantComplete := s.takeBatchLocked(c)
		if wantComplete {
			s.reloadLocked(c)
		}
		if len(batch) == 0 {
			return
		}
		c.inflight++
		c.sent++
		s.batches.Add(1) // under c.mu, before Stop's barrier: see Service.Stop
		go s.send(c, c.inv.Code, batch, s.cfg.Now().Sub(c.lastEmailConflict) < checkHintsFor)
	}
}

// leaseAheadLocked asks for more blocks of slots when the blocks this
// replica leased have fewer free slots than requests wait plus a block of
// headroom, so a batch seldom waits for a lease (a lease is a write, slow
// when the database is busy). Up to maxLeaseBlocks at a time.
func (s *Service) leaseAheadLocked(c *code) {
	need := c.queue.Len() + blockSize - c.view.freeMine(c.inv.MaxUses)
	if c.leasing || need <= 0 {
		return
	}
	s.rngMu.Lock()
	blocks := c.view.leaseCandidates(c.inv.MaxUses, min(blocksFor(need), maxLeaseBlocks), s.rng)
	s.rngMu.Unlock()
	if len(blocks) == 0 {
		return
	}
	c.leasing = true
	s.batches.Add(1)
	go s.lease(c, c.inv.Code, blocks)
}

const maxLeaseBlocks = 8

// lease asks storage for blocks and pumps with the answer. A failed request
// counts the blocks as this replica's: leases only keep replicas apart, and
// the claims themselves will meet the failure and say so.
func (s *Service) lease(c *code, name string, blocks []int) {
	defer s.batches.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	granted, err := s.store.Lease(ctx, name, blocks, s.id, s.cfg.LeaseTTL)
	cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leasing = false
	for i, b := range blocks {
		c.view.leased(b, err != nil || granted[i])
	}
	s.pumpLocked(c)
}

// popLocked takes the oldest request out of the queue.
func (s *Service) popLocked(c *code) *request {
	r := c.queue.Remove(c.queue.Front()).(*request)
	r.elem = nil
	return r
}

// markLocked records an occupied slot in the view and, while a reload is
// reading storage, remembers it so the reload does not forget it.
func (c *code) markLocked(o occupancy) {
	if o.email == "" {
		c.view.markClosed(o.slot, o.tally)
	} else {
		c.view.markTaken(o.slot, o.email, o.tally)
	}
	if c.loading {
		c.sinceLoad = append(c.sinceLoad, o)
	}
}

// takeBatchLocked answers what the view can and reserves a slot for each of
// up to BatchSize other requests. wantComplete is true when the request at
// the head of the queue can only be answered once the view is complete.
func (s *Service) takeBatchLocked(c *code) (batch []*request, wantComplete bool) {
	now := s.cfg.Now()
	for c.queue.Len() > 0 && len(batch) < s.cfg.BatchSize {
		r := c.queue.Front().Value.(*request)
		if leader, ok := c.byEmail[r.email.Canonical]; ok {
			s.popLocked(c)
			leader.followers = append(leader.followers, r)
			r.leader = leader
			continue
		}
		if out, err, ok := s.fromMemoryLocked(c, r.email); ok {
			s.popLocked(c)
			s.reply(r, out, err)
			continue
		}
		if c.inv.Admits(now) != nil {
			return batch, true // paused, expired or revoked: is this person a holder?
		}
		if !now.Before(r.deadline) {
			s.popLocked(c)
			s.reply(r, 0, errDeadline)
			continue
		}
		if wait := twinHold - now.Sub(r.arrived); r.attempts == 0 && wait > 0 && now.Sub(c.lastEmailConflict) < checkHintsFor {
			s.holdLocked(c, wait)
			return batch, false
		}
		slot, lease := c.view.nextFree(c.inv.MaxUses)
		if slot < 0 {
			// A block must be leased first (leaseAheadLocked asked), or
			// every free slot we know of is in a batch in flight: wait
			// for the answers. None at all: full, once we know it.
			return batch, !lease && c.view.reserved == 0
		}
		s.popLocked(c)
		c.view.reserve(slot)
		r.slot = slot
		c.byEmail[r.email.Canonical] = r
		batch = append(batch, r)
	}
	return batch, false
}

// holdLocked pumps c again after wait (see twinHold).
func (s *Service) holdLocked(c *code, wait time.Duration) {
	if c.holding {
		return
	}
	c.holding = true
	time.AfterFunc(wait, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.holding = false
		s.pumpLocked(c)
	})
}

// send writes one batch and settles each request with storage's answer.
func (s *Service) send(c *code, name string, batch []*request, checkHints bool) {
	defer s.batches.Done()
	now := s.cfg.Now()
	claims := make([]invite.Redemption, len(batch))
	deadline := now.Add(s.cfg.WriteTimeout)
	latest := time.Time{}
	for i, r := range batch {
		claims[i] = invite.Redemption{Code: name, Slot: r.slot, Email: r.email, Nonce: r.nonce, RedeemedAt: now, Lang: r.lang}
		if r.deadline.After(latest) {
			latest = r.deadline
		}
	}
	// Nobody in the batch waits past its own deadline, so neither does the
	// write: a later answer would reach nobody.
	ctx, cancel := context.WithDeadline(context.Background(), minTime(deadline, latest))
	results := s.claim(ctx, claims, checkHints)
	cancel()
	requestsTimedOut := latest.Before(deadline) && !s.cfg.Now().Before(latest)

	c.mu.Lock()
	defer c.mu.Unlock()
	var retry []*request
	var won []invite.Redemption
	for i, r := range batch {
		c.view.release(r.slot)
		r.slot = -1
		if results[i].Status == invite.ClaimInserted {
			won = append(won, claims[i])
		}
		if results[i].Status == invite.ClaimEmailConflict {
			c.lastEmailConflict = s.cfg.Now()
			// Who holds the email is a slower read: the rest of the
			// batch is answered without waiting for it. The person stays
			// in byEmail, so asking again meanwhile follows this request.
			c.unexplained = append(c.unexplained, r)
			continue
		}
		delete(c.byEmail, r.email.Canonical)
		retry = s.settleLocked(c, r, claims[i].Slot, results[i], requestsTimedOut, retry)
	}
	s.requeueLocked(c, retry)
	if len(won) > 0 {
		s.recordHolders(won)
		if s.cfg.OnRedeemed != nil {
			s.cfg.OnRedeemed()
		}
	}
	if len(c.unexplained) > 0 && !c.explaining {
		c.explaining = true
		s.batches.Add(1)
		go s.explainEmails(c)
	}
	c.inflight--
	s.pumpLocked(c)
}

// settleLocked records in the view what storage said about r's claim of slot
// and answers r, or appends it to retry when it must try another slot.
// timedOut: the requests' own deadline ended the write.
func (s *Service) settleLocked(c *code, r *request, slot int, res invite.ClaimResult, timedOut bool, retry []*request) []*request {
	switch res.Status {
	case invite.ClaimInserted:
		if slot < 0 {
			slot = res.Holder.Slot // found by its email (ExplainEmails)
		}
		c.markLocked(occupancy{slot, r.email.Canonical, res.Tally})
	case invite.ClaimSlotTaken:
		c.markLocked(occupancy{slot, res.Holder.Email.Canonical, res.Tally})
		c.view.collided(slot)
		c.incompleteLocked()
	case invite.ClaimSlotClosed:
		c.markLocked(occupancy{slot: slot, tally: res.Tally})
		c.view.collided(slot)
		c.incompleteLocked()
	case invite.ClaimEmailTaken:
		if res.Holder.Code == c.inv.Code {
			c.markLocked(occupancy{res.Holder.Slot, res.Holder.Email.Canonical, res.Tally})
		}
		c.incompleteLocked()
	case invite.ClaimRetry:
		c.staleLocked() // the conflict vanished: something was deleted
		s.reloadStaleLocked(c)
	case invite.ClaimFailed:
		// The outcome is unknown: our document may be in storage.
		c.incompleteLocked()
		if !(timedOut && invite.UnavailableReason(res.Err) == "timeout") {
			s.storageFailed(res.Err) // not when it was the requests' own deadline
		}
	}
	out, done, err := invite.Settle(c.inv.Code, r.email, res)
	switch {
	case done:
		s.reply(r, out, err)
	case r.attempts+1 >= s.cfg.MaxAttempts:
		s.reply(r, 0, errAttempts)
	case !s.cfg.Now().Before(r.deadline):
		s.reply(r, 0, errDeadline)
	case r.gone:
		// Its client left while it was in flight: it is not tried
		// again, but the same person asking behind it is.
		if next := s.abandonLocked(r); next != nil {
			retry = append(retry, next)
		}
	default:
		r.attempts++
		retry = append(retry, r)
	}
	return retry
}

// requeueLocked puts retries back at the head of the queue, in their order.
func (s *Service) requeueLocked(c *code, retry []*request) {
	for i := len(retry) - 1; i >= 0; i-- {
		retry[i].elem = c.queue.PushFront(retry[i])
	}
}

// explainEmails reads who holds the emails of the requests in c.unexplained,
// all of them in one read, until none is left, and settles them. Apart from
// the batches, because on the test bed a read by email scans the whole
// collection: a batch waiting for it would hold up every claim behind it.
func (s *Service) explainEmails(c *code) {
	defer s.batches.Done()
	for {
		c.mu.Lock()
		batch := c.unexplained
		c.unexplained = nil
		if len(batch) == 0 {
			c.explaining = false
			c.mu.Unlock()
			return
		}
		claims := make([]invite.Redemption, len(batch))
		latest := time.Time{}
		for i, r := range batch {
			claims[i] = invite.Redemption{Code: c.inv.Code, Email: r.email, Nonce: r.nonce}
			if r.deadline.After(latest) {
				latest = r.deadline
			}
		}
		c.mu.Unlock()

		deadline := s.cfg.Now().Add(s.cfg.WriteTimeout)
		ctx, cancel := context.WithDeadline(context.Background(), minTime(deadline, latest))
		results := s.store.ExplainEmails(ctx, claims)
		cancel()
		timedOut := latest.Before(deadline) && !s.cfg.Now().Before(latest)

		c.mu.Lock()
		var retry []*request
		for i, r := range batch {
			delete(c.byEmail, r.email.Canonical)
			retry = s.settleLocked(c, r, -1, results[i], timedOut, retry)
		}
		s.requeueLocked(c, retry)
		s.pumpLocked(c)
		c.mu.Unlock()
	}
}

// claim writes claims; with checkHints, the holders hints answer first the
// people known to hold a slot, and only the others are written.
func (s *Service) claim(ctx context.Context, claims []invite.Redemption, checkHints bool) []invite.ClaimResult {
	if !checkHints {
		return s.store.Claim(ctx, claims)
	}
	results := s.store.HintedHolders(ctx, claims)
	rest := invite.Unanswered(results)
	if len(rest) == 0 {
		return results
	}
	write := make([]invite.Redemption, len(rest))
	for i, idx := range rest {
		write[i] = claims[idx]
	}
	for i, r := range s.store.Claim(ctx, write) {
		results[rest[i]] = r
	}
	return results
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// reloadLocked starts a reload of c's slots, unless one is running; at most
// one per ReloadEvery, except the first.
func (s *Service) reloadLocked(c *code) {
	if c.loading || c.reloadSoon {
		return
	}
	if wait := s.cfg.ReloadEvery - s.cfg.Now().Sub(c.lastLoad); c.loadedLocked() && wait > 0 {
		c.reloadSoon = true
		time.AfterFunc(wait, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.reloadSoon = false
			s.reloadLocked(c)
		})
		return
	}
	s.startReloadLocked(c)
}

// startReloadLocked starts a reload now (a running one first finishes).
func (s *Service) startReloadLocked(c *code) {
	if c.loading {
		return
	}

	// The code's writer may tell what its slots hold, unless this reload
	// is to forget a revocation, which the writer may not have seen yet.
	fromWriter := s.cfg.Writers != nil && c.stale == c.staleFrom && !c.suspect
	c.loading, c.sinceLoad, c.loadFrom, c.staleFrom = true, c.sinceLoad[:0], c.signals, c.stale
	go s.reload(c, fromWriter)
}

// reload rebuilds the view from the code's slots in storage, then re-applies
// what happened while it read: slots seen occupied since, and the
// reservations of batches still in flight. Rebuilding (not merging) is what
// lets a deleted redemption free its slot and its holder.
func (s *Service) reload(c *code, fromWriter bool) {
	c.mu.Lock()
	name := c.inv.Code
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	var occ []invite.Occupant
	var err error
	told := false
	if fromWriter {
		occ, told = s.cfg.Writers.Occupants(ctx, name)
	}
	if !told {
		occ, err = s.store.Occupants(ctx, name)
	}
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.loading = false
	if err != nil {
		s.storageFailed(err)
		s.log.Error(err, "Could not load slots", "code", name)
		for c.queue.Len() > 0 {
			s.reply(s.popLocked(c), 0, errors.Join(invite.ErrUnavailable, err))
		}
		return
	}
	view := newSlotView(max(c.inv.MaxUses, 1))
	if c.view != nil {
		view.inherit(c.view)
	}
	for _, o := range occ {
		if o.Closed {
			view.markClosed(o.Slot, o.Tally)
		} else {
			view.markTaken(o.Slot, o.Email, o.Tally)
		}
	}
	for _, o := range c.sinceLoad {
		if o.email == "" {
			view.markClosed(o.slot, o.tally)
		} else {
			view.markTaken(o.slot, o.email, o.tally)
		}
	}
	for _, r := range c.byEmail { // requests in batches in flight
		if r.slot < 0 {
			continue // waiting for explainEmails: no slot reserved
		}
		view.grow(r.slot + 1) // maxUses may have been lowered meanwhile
		if view.slots[r.slot] == free {
			view.reserve(r.slot)
		}
	}
	c.view, c.sinceLoad = view, c.sinceLoad[:0]
	c.complete = c.signals == c.loadFrom
	c.suspect = c.stale != c.staleFrom

	c.lastLoad = s.cfg.Now()
	if c.suspect {
		// A deletion while we read (a revocation the tally poll saw):
		// read again. Other replicas' redemptions meanwhile leave the
		// view incomplete, not wrong: what needs every holder asks for a
		// reload when it needs it (takeBatchLocked), so a crowd is not
		// read again and again while it lasts.
		s.reloadStaleLocked(c)
	}
	s.pumpLocked(c)
}
