package controllers

import (
	"context"
	"sync"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// usageBoard reads what Invitation statuses need for every code at once, at
// most once per interval: two aggregations (tallies and mail counts by
// code). Only for a code whose figures changed does it ask more (the latest
// redemption and the oldest pending email, and a slot balance for
// revocations). So idle Invitations cost no queries, whatever their number,
// and each pass costs O(changes), not O(codes).
type usageBoard struct {
	store    Store
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	at      time.Time // of the last aggregation
	err     error     // of the last aggregation: every get answers it until the next, so an outage costs one timeout per interval, not one per Invitation
	tallies map[string]invite.Tally
	counts  map[string]invite.MailCounts
	known   map[string]codeUsage
}

// codeUsage is what the board read in detail for a code, and for which
// figures.
type codeUsage struct {
	tally  invite.Tally
	counts invite.MailCounts
	usage  invite.Usage
	mail   invite.MailCounts
}

func newUsageBoard(store Store, interval time.Duration, now func() time.Time) *usageBoard {
	return &usageBoard{store: store, interval: interval, now: now, known: map[string]codeUsage{}}
}

// get returns code's usage and mail counts as of the last aggregation.
func (b *usageBoard) get(ctx context.Context, code string) (invite.Usage, invite.MailCounts, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.at.IsZero() || b.now().Sub(b.at) >= b.interval {
		b.at = b.now()
		b.tallies, b.err = b.store.Tallies(ctx)
		if b.err == nil {
			b.counts, b.err = b.store.MailByCode(ctx)
		}
	}
	if b.err != nil {
		return invite.Usage{}, invite.MailCounts{}, b.err
	}
	tally, counts := b.tallies[code], b.counts[code]
	if known, ok := b.known[code]; ok && known.tally == tally && known.counts == counts {
		return known.usage, known.mail, nil
	}
	if known, ok := b.known[code]; !ok || known.tally != tally {
		// Someone was revoked, or the slots changed: give back closed
		// slots that revocations freed (invite.PlanSlots).
		if err := b.store.BalanceSlots(ctx, code); err != nil {
			return invite.Usage{}, invite.MailCounts{}, err
		}
	}
	u, err := b.store.Usage(ctx, code)
	if err != nil {
		return invite.Usage{}, invite.MailCounts{}, err
	}
	m, err := b.store.MailCounts(ctx, code)
	if err != nil {
		return invite.Usage{}, invite.MailCounts{}, err
	}
	b.known[code] = codeUsage{tally: tally, counts: counts, usage: u, mail: m}
	return u, m, nil
}
