package claim

import (
	"context"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Run keeps the view fresh until ctx ends: the invitations' version every
// PollInterval (the invitations themselves when it changed, and every
// FullPoll), usage tallies every UsageInterval. Polling, not change streams,
// because the test bed has none; an idle poll reads one small document, so
// its cost does not grow with the number of codes.
func (s *Service) Run(ctx context.Context) error {
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	var lastUsage time.Time
	for {
		if err := s.pollInvitations(ctx); err == nil && s.cfg.Now().Sub(lastUsage) >= s.cfg.UsageInterval {
			s.refreshTallies(ctx)
			lastUsage = s.cfg.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		}
	}
}

// pollInvitations reloads the invitations when their version changed, or
// FullPoll passed (an edit made behind the operator's back).
func (s *Service) pollInvitations(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	// The version first: a write that lands after this read changes it
	// again, so the next poll reloads.
	version, err := s.store.InvitationsVersion(ctx)
	if err == nil && version == s.version && s.loaded.Load() && s.cfg.Now().Sub(s.fullLoad) < s.cfg.FullPoll {
		s.storageAnswered()
		return nil
	}
	var invs []invite.Invitation
	if err == nil {
		invs, err = s.store.Invitations(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.storageFailed(err)
		}
		return err
	}
	s.version, s.fullLoad = version, s.cfg.Now()
	s.storageAnswered()
	seen := make(map[string]bool, len(invs))
	for _, inv := range invs {
		if s.cfg.Campaign != "" && inv.Campaign != s.cfg.Campaign {
			continue // another fleet's code: it answers 404 here, as the route never sends it
		}
		if err := inv.Validate(); err != nil {
			if !s.invalid[inv.Code] {
				s.log.Error(err, "Ignoring an invalid invitation document", "code", inv.Code)
			}
			s.invalid[inv.Code] = true
			continue
		}
		delete(s.invalid, inv.Code)
		seen[inv.Code] = true
		if c := s.lookup(inv.Code); c != nil {
			c.mu.Lock()
			if c.view != nil && inv.MaxUses != c.inv.MaxUses {
				// The operator closed or reopened slots before writing the
				// new limit: see them before answering "full".
				c.staleLocked()
				s.reloadLocked(c)
			}
			c.inv = inv
			if c.view != nil {
				c.view.grow(inv.MaxUses)
			}
			s.pumpLocked(c) // a raised maxUses or a resumed code serves waiting requests
			c.mu.Unlock()
			continue
		}
		s.mu.Lock()
		s.codes[inv.Code] = newCode(inv)
		s.mu.Unlock()
	}
	s.mu.Lock()
	for name := range s.codes {
		if !seen[name] {
			delete(s.codes, name) // the operator revokes rather than deletes; tolerate both
		}
	}
	s.mu.Unlock()
	s.loaded.Store(true)
	return nil
}

const maxUnjudgedTallies = 3

// couldBeOwnWrites reports whether the storage tally could be the view's
// as the read began plus writes of this replica that were in flight
// meanwhile: no fewer documents, the same closed slots. (Compared with the
// view as it is now, it could not tell: writes answered during the read are
// in the view and perhaps not in what the read saw.)
func couldBeOwnWrites(view, storage invite.Tally) bool {
	return storage.Docs() >= view.Docs() && storage.Closed() == view.Closed()
}

// refreshTallies reads every code's tally in one query. A loaded code whose
// tally differs from its view's is reloaded at once: another replica took
// slots, or staff revoked someone (a deleted document changes the tally even
// when another redemption replaced it), or the operator closed or reopened
// slots. So every replica forgets a revoked holder within UsageInterval of
// the last write of its own to that code.
//
// A code this replica was writing while the tally was read is not judged
// when the difference could be those writes alone (no fewer documents than
// the view had as the read began, no other closed slots): the tally may
// count some of them and the view none yet, or the reverse, and calling the
// view suspect for that would have the same person asking again mid-crowd
// written again instead of answered from memory. A tally with fewer
// documents than the view had is a deletion whatever the writes, and is
// judged at once. A deferred code is judged at the next read
// after its writes, and at the fourth in a row whatever they are: a code
// kept busy by requests that each need a write (people who hold another
// code's slot) still forgets a revoked holder whose place someone else took
// meanwhile, within four usage intervals.
func (s *Service) refreshTallies(ctx context.Context) {
	type writes struct {
		inflight, sent int
		view           invite.Tally // the view's tally as the read began
	}
	before := map[*code]writes{}
	for _, c := range s.allCodes() {
		c.mu.Lock()
		w := writes{inflight: c.inflight, sent: c.sent}
		if c.view != nil {
			w.view = invite.Tally(c.view.tally)
		}
		before[c] = w
		c.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	tallies, err := s.store.Tallies(ctx)
	cancel()
	if err != nil {
		// Invitations just answered, so storage is up but this read is
		// not: no view can be vouched for until one succeeds.
		s.log.Error(err, "Could not read tallies; answers that need every holder wait for a reload", "reason", invite.UnavailableReason(err))
		for _, c := range s.allCodes() {
			c.mu.Lock()
			c.incompleteLocked()
			c.mu.Unlock()
		}
		return
	}
	for _, c := range s.allCodes() {
		c.mu.Lock()
		c.tally, c.tallied = tallies[c.inv.Code], true
		w, known := before[c]
		writing := !known || w.inflight > 0 || w.sent != c.sent
		judged := !writing || !couldBeOwnWrites(w.view, c.tally) || c.unjudged >= maxUnjudgedTallies
		if judged {
			c.unjudged = 0
		} else {
			c.unjudged++
		}
		if judged && c.view != nil && int64(c.tally) != c.view.tally {
			c.staleLocked()
			s.reloadStaleLocked(c)
		}
		c.mu.Unlock()
	}
}
