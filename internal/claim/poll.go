package claim

import (
	"context"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Run keeps the view fresh until ctx ends: invitations every PollInterval,
// usage counts every UsageInterval. Polling, not change streams, because the
// test bed has none and a poll of one small collection is cheap.
func (s *Service) Run(ctx context.Context) error {
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	var lastUsage time.Time
	for {
		if err := s.refreshInvitations(ctx); err == nil && s.cfg.Now().Sub(lastUsage) >= s.cfg.UsageInterval {
			s.refreshUsage(ctx)
			lastUsage = s.cfg.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		}
	}
}

func (s *Service) refreshInvitations(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	invs, err := s.store.Invitations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.setHealth(err)
		}
		return err
	}
	s.setHealth(nil)
	seen := make(map[string]bool, len(invs))
	for _, inv := range invs {
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
			c.inv = inv
			c.view.grow(inv.MaxUses)
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

// refreshUsage reads each live code's usage count. When storage has fewer
// redemptions than this replica thinks are taken (staff deleted one), the
// code's slots are reloaded so the freed slot can be taken again.
func (s *Service) refreshUsage(ctx context.Context) {
	for _, c := range s.allCodes() {
		c.mu.Lock()
		name, state := c.inv.Code, c.inv.State
		c.mu.Unlock()
		if state == invite.StateRevoked {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		used, err := s.store.Used(cctx, name)
		cancel()
		if err != nil {
			s.setHealth(err)
			return
		}
		c.mu.Lock()
		c.used = used
		if c.loadedLocked() && used < c.view.taken && !c.loading {
			c.loading = true
			go s.reload(c)
		}
		c.mu.Unlock()
	}
}
