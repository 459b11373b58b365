package claim

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// code is the state of one invitation in this replica.
type code struct {
	mu  sync.Mutex
	inv invite.Invitation

	used      int       // count from storage at the last usage poll
	view      *slotView // this replica's picture of the slots
	loading   bool
	stale     bool // a conflict showed other replicas took slots we did not know of
	lastLoad  time.Time
	sinceLoad []holding // slots seen taken while a reload was reading storage

	queue    []*request
	inflight int
	byEmail  map[string]*request // requests in flight, so one person is never in two batches
}

// request is one redemption waiting for its answer.
type request struct {
	email     invite.Email
	lang      string
	nonce     string
	slot      int
	attempts  int
	abandoned atomic.Bool
	done      chan answer // buffered: answered exactly once, never blocks
	followers []*request  // the same person asking again while this was in flight
}

type holding struct {
	slot  int
	email string
}

type answer struct {
	out invite.Outcome
	err error
}

func newCode(inv invite.Invitation) *code {
	return &code{inv: inv, view: newSlotView(inv.MaxUses), byEmail: map[string]*request{}}
}

func (c *code) loadedLocked() bool { return !c.lastLoad.IsZero() }

// usedLocked is the best known usage: storage's count or what this replica
// has seen taken since, whichever is higher.
func (c *code) usedLocked() int { return max(c.used, c.view.taken) }

func (r *request) reply(out invite.Outcome, err error) {
	r.done <- answer{out, err}
	for _, f := range r.followers {
		if out == invite.Redeemed {
			out = invite.AlreadyRedeemed
		}
		f.done <- answer{out, err}
	}
}

// pumpLocked starts batches while there are requests and room in flight. A
// batch starts at once when nothing is in flight (an idle code answers
// quickly); a further one only when a full batch is waiting, because requests
// that gather behind an insert in flight make the next insert larger, and the
// database's time goes to round trips, not to rows.
func (s *Service) pumpLocked(c *code) {
	for c.inflight < s.cfg.Parallel && len(c.queue) > 0 {
		if s.closing.Load() {
			for _, r := range c.queue {
				r.reply(0, errClosing)
			}
			c.queue = nil
			return
		}
		if c.inflight > 0 && len(c.queue) < s.cfg.BatchSize {
			return
		}
		// Load when we never did, when storage counts the code full but we
		// do not know every holder (a holder retrying must hear 200, not
		// 410), and after a conflict, at most every ReloadEvery.
		if !c.loadedLocked() ||
			c.used >= c.inv.MaxUses && !c.view.knowsAllHolders(c.inv.MaxUses) ||
			c.stale && s.cfg.Now().Sub(c.lastLoad) >= s.cfg.ReloadEvery {
			if !c.loading {
				c.loading, c.sinceLoad = true, c.sinceLoad[:0]
				go s.reload(c)
			}
			return // the reload pumps again when it is done
		}
		batch := s.takeBatchLocked(c)
		if len(batch) == 0 {
			return
		}
		c.inflight++
		s.batches.Add(1) // under c.mu, before Stop's barrier: see Service.Stop
		go s.send(c, c.inv.Code, batch)
	}
}

// markTakenLocked records a holder in the view and, while a reload is
// reading storage, remembers it so the reload does not forget it.
func (c *code) markTakenLocked(slot int, email string) {
	c.view.markTaken(slot, email)
	if c.loading {
		c.sinceLoad = append(c.sinceLoad, holding{slot, email})
	}
}

// takeBatchLocked answers what the view can and reserves a slot for each of
// up to BatchSize other requests.
func (s *Service) takeBatchLocked(c *code) []*request {
	now := s.cfg.Now()
	var batch []*request
	for len(c.queue) > 0 && len(batch) < s.cfg.BatchSize {
		r := c.queue[0]
		if r.abandoned.Load() {
			// Its followers are still waiting: they go first in its place.
			c.queue = append(r.followers, c.queue[1:]...)
			continue
		}
		if _, ok := c.view.holders[r.email.Canonical]; ok {
			c.queue = c.queue[1:]
			r.reply(invite.AlreadyRedeemed, nil)
			continue
		}
		if leader, ok := c.byEmail[r.email.Canonical]; ok {
			c.queue = c.queue[1:]
			leader.followers = append(leader.followers, r)
			continue
		}
		if err := c.inv.Open(now, c.usedLocked()); err != nil {
			c.queue = c.queue[1:]
			r.reply(0, err)
			continue
		}
		slot := c.view.nextFree(c.inv.MaxUses)
		if slot < 0 {
			break // every free slot is in a batch in flight: wait for their answers
		}
		c.queue = c.queue[1:]
		c.view.reserve(slot)
		r.slot = slot
		c.byEmail[r.email.Canonical] = r
		batch = append(batch, r)
	}
	return batch
}

// send writes one batch and settles each request with storage's answer.
func (s *Service) send(c *code, name string, batch []*request) {
	defer s.batches.Done()
	now := s.cfg.Now()
	claims := make([]invite.Redemption, len(batch))
	for i, r := range batch {
		claims[i] = invite.Redemption{Code: name, Slot: r.slot, Email: r.email, Nonce: r.nonce, RedeemedAt: now, Lang: r.lang}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	results := s.store.Claim(ctx, claims)
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	var retry []*request
	for i, r := range batch {
		res := results[i]
		delete(c.byEmail, r.email.Canonical)
		c.view.release(r.slot)
		switch res.Status {
		case invite.ClaimInserted:
			c.markTakenLocked(r.slot, r.email.Canonical)
		case invite.ClaimSlotTaken:
			c.markTakenLocked(r.slot, res.Holder.Email.Canonical)
			c.stale = true
		case invite.ClaimEmailTaken:
			if res.Holder.Code == c.inv.Code {
				c.markTakenLocked(res.Holder.Slot, res.Holder.Email.Canonical)
			}
		case invite.ClaimFailed:
			s.setHealth(res.Err)
		}
		out, done, err := invite.Settle(c.inv.Code, r.email, res)
		switch {
		case done:
			r.reply(out, err)
		case r.attempts+1 >= s.cfg.MaxAttempts:
			r.reply(0, errAttempts)
		default:
			r.attempts++
			retry = append(retry, r)
		}
	}
	c.queue = append(retry, c.queue...)
	c.inflight--
	s.pumpLocked(c)
}

// reload rebuilds the view from the code's redemptions in storage, then
// re-applies what happened while it read: slots seen taken since, and the
// reservations of batches still in flight. Rebuilding (not merging) is what
// lets a deleted redemption free its slot and its holder.
func (s *Service) reload(c *code) {
	c.mu.Lock()
	name := c.inv.Code
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	rs, err := s.store.SlotHolders(ctx, name)
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.loading = false
	if err != nil {
		s.setHealth(err)
		s.log.Error(err, "Could not load slots", "code", name)
		for _, r := range c.queue {
			r.reply(0, errors.Join(invite.ErrUnavailable, err))
		}
		c.queue = nil
		return
	}
	first := !c.loadedLocked()
	view := newSlotView(c.inv.MaxUses)
	view.cursor = c.view.cursor
	for _, r := range rs {
		view.markTaken(r.Slot, r.Email.Canonical)
	}
	for _, h := range c.sinceLoad {
		view.markTaken(h.slot, h.email)
	}
	for _, r := range c.byEmail { // requests in batches in flight
		view.grow(r.slot + 1) // maxUses may have been lowered meanwhile
		if view.slots[r.slot] == free {
			view.reserve(r.slot)
		}
	}
	c.view, c.sinceLoad, c.used = view, c.sinceLoad[:0], len(rs)
	if first {
		c.view.cursor = s.intn(max(c.inv.MaxUses, 1)) // spread replicas over the slot space
	} else {
		s.rngMu.Lock()
		c.view.jump(c.inv.MaxUses, s.rng)
		s.rngMu.Unlock()
	}
	c.lastLoad, c.stale = s.cfg.Now(), false
	s.pumpLocked(c)
}
