package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// summaryTimeout bounds each of the usage board's background reads (the
// two aggregations over every code, and the one read of the changed codes'
// times). Longer than a pass's storeTimeout: on the test bed every
// aggregation reads the whole collection, which after a large crowd's mail
// takes seconds, and a slow summary is no outage.
const summaryTimeout = 30 * time.Second

// usageBoard reads what Invitation statuses need for every code at once, in
// the background, once per interval: two aggregations, tallies and mail
// counts by code, which give every code's Used (invite.Tally.Used) and
// status.mail. For the codes whose figures changed, one more query reads
// what the summaries cannot give: the latest redemption of those whose
// tally changed, and the oldest pending email of those with one pending
// (Store.CodeTimes). Only the changed codes' Invitations are woken; a pass
// reads the board from memory. So a refresh costs at most three queries,
// however many codes changed (on the test bed each was five scans per
// changed code, one code after another, which held statuses back for
// minutes after a crowd), and idle Invitations cost neither queries nor
// passes, whatever their number.
//
// A read that fails while MongoDB answers a ping (slow, not down) keeps the
// last good board: only a store that does not answer makes every
// Invitation MongoDBUnavailable.
type usageBoard struct {
	store    Store
	interval time.Duration
	timeout  time.Duration // of each background read
	now      func() time.Time
	log      logr.Logger

	wake chan struct{} // a pass met a code the board has not read

	mu      sync.Mutex
	summary bool  // a summary was read once
	err     error // MongoDB did not answer at the last refresh; nil otherwise
	at      time.Time
	tallies map[string]invite.Tally
	counts  map[string]invite.MailCounts
	known   map[string]codeUsage
	// waiting are codes that passes asked about before the board had read
	// them: they are woken after the next refresh, changed or not.
	waiting map[string]bool
	// balanced is the tally each code's slots were last balanced at.
	balanced map[string]invite.Tally
}

// codeUsage is what the board knows of a code (usage and mail as statuses
// show them), and after which summary figures.
type codeUsage struct {
	tally  invite.Tally
	counts invite.MailCounts
	usage  invite.Usage
	mail   invite.MailCounts
}

func newUsageBoard(store Store, interval time.Duration, now func() time.Time, log logr.Logger) *usageBoard {
	return &usageBoard{store: store, interval: interval, timeout: summaryTimeout, now: now, log: log,
		wake: make(chan struct{}, 1), known: map[string]codeUsage{}, waiting: map[string]bool{}, balanced: map[string]invite.Tally{}}
}

// get returns code's usage and mail counts as the board last read them. read
// is false when it has not read them yet (the board reads them soon and
// wakes code's Invitations); err is set only while MongoDB does not answer.
func (b *usageBoard) get(code string) (u invite.Usage, m invite.MailCounts, read bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return u, m, false, b.err
	}
	if k, ok := b.known[code]; ok {
		return k.usage, k.mail, true, nil
	}
	_, hasTally := b.tallies[code]
	_, hasMail := b.counts[code]
	if b.summary && !hasTally && !hasMail {
		// No document of code at the last summary: nothing to read. A
		// redemption since changes its tally, and the board reads it then.
		b.known[code] = codeUsage{}
		return u, m, true, nil
	}
	b.waiting[code] = true
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return u, m, false, nil
}

// balanceDue says whether code's slots need balancing (closed slots given
// back after revocations, invite.PlanSlots): its tally changed since they
// last were. A code with no document has nothing to give back.
func (b *usageBoard) balanceDue(code string) (invite.Tally, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k, ok := b.known[code]
	if !ok || k.tally == 0 {
		return 0, false
	}
	t, done := b.balanced[code]
	return k.tally, !done || t != k.tally
}

// balancedAt records that code's slots were balanced at tally t.
func (b *usageBoard) balancedAt(code string, t invite.Tally) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.balanced[code] = t
}

// run refreshes the board every interval (and soon after a pass met a code
// it has not read) until ctx ends, calling wake with the codes whose figures
// changed, or with all=true when MongoDB stopped or started answering.
func (b *usageBoard) run(ctx context.Context, wake func(codes []string, all bool)) {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		codes, all := b.refresh(ctx)
		if ctx.Err() != nil {
			return
		}
		if all || len(codes) > 0 {
			wake(codes, all)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.wake:
		}
	}
}

// refresh reads the summaries, then the times of the codes whose summary
// figures changed. It returns the codes to wake, or all when the store's
// availability changed.
func (b *usageBoard) refresh(ctx context.Context) (codes []string, all bool) {
	sctx, cancel := context.WithTimeout(ctx, b.timeout)
	tallies, err := b.store.Tallies(sctx)
	var counts map[string]invite.MailCounts
	if err == nil {
		counts, err = b.store.MailByCode(sctx)
	}
	cancel()
	if err != nil {
		return nil, b.failed(ctx, "Usage summary failed", err)
	}

	b.mu.Lock()
	wasDown := b.err != nil
	b.summary, b.err, b.at, b.tallies, b.counts = true, nil, b.now(), tallies, counts
	changed := map[string]codeUsage{}
	var latest, pending []string
	seen := map[string]bool{}
	for _, m := range []map[string]bool{keys(tallies), keys(counts), keys(b.known), b.waiting} {
		for code := range m {
			if seen[code] {
				continue
			}
			seen[code] = true
			k, ok := b.known[code]
			t, c := tallies[code], counts[code]
			if ok && k.tally == t && k.counts == c {
				continue
			}
			n := codeUsage{tally: t, counts: c, usage: invite.Usage{Used: t.Used()}, mail: c}
			switch {
			case t.Used() == 0: // nobody holds a slot: no latest redemption
			case ok && k.tally == t:
				// The same documents (only their mail moved on): the
				// same latest redemption.
				n.usage.LastRedemption = k.usage.LastRedemption
			default:
				// Read with all its redemptions, pending emails included.
				latest = append(latest, code)
				changed[code] = n
				continue
			}
			if c.Pending > 0 {
				pending = append(pending, code)
			}
			changed[code] = n
		}
	}
	waiting := b.waiting
	b.waiting = map[string]bool{}
	b.mu.Unlock()

	if len(latest) > 0 || len(pending) > 0 {
		dctx, cancel := context.WithTimeout(ctx, b.timeout)
		last, oldest, err := b.store.CodeTimes(dctx, latest, pending)
		cancel()
		if err != nil {
			// The codes stay changed: the next refresh reads them again.
			b.mu.Lock()
			for code := range waiting {
				b.waiting[code] = true
			}
			b.mu.Unlock()
			return nil, b.failed(ctx, "Reading changed codes' usage failed", fmt.Errorf("%d codes: %w", len(latest)+len(pending), err)) || wasDown
		}
		for _, code := range latest {
			n := changed[code]
			n.usage.LastRedemption = last[code]
			changed[code] = n
		}
		for code, n := range changed {
			if n.mail.Pending > 0 {
				n.mail.OldestPending = oldest[code]
				changed[code] = n
			}
		}
	}

	b.mu.Lock()
	for code, n := range changed {
		b.known[code] = n
		codes = append(codes, code)
		delete(waiting, code)
	}
	b.mu.Unlock()
	for code := range waiting {
		codes = append(codes, code)
	}
	return codes, wasDown
}

// failed handles a background read that failed: when MongoDB answers a ping
// it was slow (an aggregation over a large collection), not down, so the
// last good board stays; otherwise every Invitation is told. It reports
// whether the store's availability changed.
func (b *usageBoard) failed(ctx context.Context, msg string, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, storeTimeout)
	perr := b.store.Ping(pctx)
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	wasDown := b.err != nil
	if perr == nil {
		b.log.Error(err, msg+"; MongoDB answers, so the last usage read stays in the statuses", "readAt", b.at)
		b.err = nil
		return wasDown
	}
	b.err = err
	return !wasDown
}

func keys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}
