package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// countingStore counts what the usage board asks; a pure unit test of the
// board's bookkeeping (the suite runs it against the test bed).
type countingStore struct {
	Store
	tallies  map[string]invite.Tally
	mail     map[string]invite.MailCounts
	last     map[string]time.Time // what CodeTimes answers
	oldest   map[string]time.Time
	calls    map[string]int
	sumErr   error // what Tallies answers, when set
	timesErr error // what CodeTimes answers, when set
	pingErr  error
	detailed []string // codes whose latest redemption was read
	pending  []string // codes whose oldest pending email was asked for alone
}

func (s *countingStore) Tallies(context.Context) (map[string]invite.Tally, error) {
	s.calls["tallies"]++
	if s.sumErr != nil {
		return nil, s.sumErr
	}
	return s.tallies, nil
}

func (s *countingStore) MailByCode(context.Context) (map[string]invite.MailCounts, error) {
	s.calls["mail"]++
	return s.mail, nil
}

func (s *countingStore) CodeTimes(_ context.Context, latest, pending []string) (last, oldest map[string]time.Time, err error) {
	s.calls["times"]++
	if s.timesErr != nil {
		return nil, nil, s.timesErr
	}
	s.detailed = append(s.detailed, latest...)
	s.pending = append(s.pending, pending...)
	last, oldest = map[string]time.Time{}, map[string]time.Time{}
	for _, code := range latest {
		if t, ok := s.last[code]; ok {
			last[code] = t
		}
		if t, ok := s.oldest[code]; ok {
			oldest[code] = t
		}
	}
	for _, code := range pending {
		if t, ok := s.oldest[code]; ok {
			oldest[code] = t
		}
	}
	return last, oldest, nil
}

func (s *countingStore) Ping(context.Context) error { s.calls["ping"]++; return s.pingErr }

func TestUsageBoardCostsOnlyChanges(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{tallies: map[string]invite.Tally{"c3": invite.Tally(invite.TallyOf("c3#0", "n", false))}, calls: map[string]int{}}
	b := newUsageBoard(st, 10*time.Second, time.Now, logr.Discard())
	pass := func() (unread int) {
		t.Helper()
		for i := range 300 {
			_, _, read, err := b.get(fmt.Sprintf("c%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if !read {
				unread++
			}
		}
		return unread
	}
	if n := pass(); n != 300 {
		t.Fatalf("before any summary: %d codes read, want none", 300-n)
	}
	woken, all := b.refresh(ctx)
	if st.calls["tallies"] != 1 || st.calls["times"] != 1 || !slices.Equal(st.detailed, []string{"c3"}) || all {
		t.Fatalf("first refresh: %v, all=%v; want one aggregation and only the code with documents read", st.calls, all)
	}
	if len(woken) != 300 {
		t.Fatalf("first refresh woke %d codes, want the 300 passes asked about", len(woken))
	}
	if n := pass(); n != 0 {
		t.Fatalf("%d codes unread after the summary", n)
	}
	if u, _, _, _ := b.get("c3"); u.Used != 1 {
		t.Fatalf("c3: %+v", u)
	}

	for range 3 { // idle
		if woken, all := b.refresh(ctx); len(woken) > 0 || all {
			t.Fatalf("idle refresh woke %v (all=%v)", woken, all)
		}
		pass()
	}
	if st.calls["tallies"] != 4 || st.calls["times"] != 1 {
		t.Fatalf("idle: %v; want one aggregation per refresh and no per-code reads", st.calls)
	}

	st.tallies["c7"] = invite.Tally(invite.TallyOf("c7#0", "n", false)) // someone redeemed c7
	woken, _ = b.refresh(ctx)
	if !slices.Equal(woken, []string{"c7"}) || !slices.Equal(st.detailed, []string{"c3", "c7"}) {
		t.Fatalf("after one change: woke %v, read %v; want c7 alone", woken, st.detailed)
	}
	if tally, due := b.balanceDue("c7"); !due || tally != st.tallies["c7"] {
		t.Fatalf("c7's slots not due for balancing after its tally changed")
	}
	b.balancedAt("c7", st.tallies["c7"])
	if _, due := b.balanceDue("c7"); due {
		t.Fatalf("c7 due again without a change")
	}
	if _, due := b.balanceDue("c8"); due {
		t.Fatalf("c8 (no document) due for balancing")
	}
}

func TestUsageBoardSlowSummaryIsNoOutage(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{tallies: map[string]invite.Tally{"c1": invite.Tally(invite.TallyOf("c1#0", "n", false))}, calls: map[string]int{}}
	b := newUsageBoard(st, time.Second, time.Now, logr.Discard())
	b.refresh(ctx)

	st.sumErr = context.DeadlineExceeded // a summary too slow for its timeout; MongoDB answers a ping
	if woken, all := b.refresh(ctx); len(woken) > 0 || all {
		t.Fatalf("slow summary woke %v (all=%v)", woken, all)
	}
	if u, _, read, err := b.get("c1"); err != nil || !read || u.Used != 1 {
		t.Fatalf("during a slow summary: %+v read=%v err=%v; want the last good figures", u, read, err)
	}

	st.pingErr = errors.New("server selection timeout") // MongoDB does not answer
	if _, all := b.refresh(ctx); !all {
		t.Fatal("an outage does not wake every Invitation")
	}
	if _, _, _, err := b.get("c1"); err == nil {
		t.Fatal("an outage is not reported")
	}
	if _, all := b.refresh(ctx); all {
		t.Fatal("every refresh of an outage wakes every Invitation")
	}

	st.sumErr, st.pingErr = nil, nil
	if _, all := b.refresh(ctx); !all {
		t.Fatal("recovery does not wake every Invitation")
	}
	if _, _, read, err := b.get("c1"); err != nil || !read {
		t.Fatalf("after recovery: read=%v err=%v", read, err)
	}
}

// After a crowd over many codes, the board used to read each changed code's
// details one after another (five scans each on the test bed), and statuses
// lagged minutes behind. Now a refresh costs the two summaries and at most
// one query for all changed codes, however many changed: Used comes from the
// tally, the mail counts from their summary, and only the times from
// CodeTimes.
func TestUsageBoardReadsChangedCodesInOneQuery(t *testing.T) {
	ctx := context.Background()
	st := &countingStore{tallies: map[string]invite.Tally{}, mail: map[string]invite.MailCounts{},
		last: map[string]time.Time{}, oldest: map[string]time.Time{}, calls: map[string]int{}}
	b := newUsageBoard(st, 10*time.Second, time.Now, logr.Discard())
	b.refresh(ctx)

	const n = 25
	t0 := time.Date(2026, 12, 1, 18, 0, 0, 0, time.UTC)
	crowd := func(round int) {
		for i := range n {
			code := fmt.Sprintf("c%d", i)
			var tally invite.Tally
			for slot := range round * (i + 1) {
				tally += invite.Tally(invite.TallyOf(invite.SlotID(code, slot), fmt.Sprint(slot), false))
			}
			tally += invite.Tally(invite.TallyOf(invite.SlotID(code, 999), "closed", true)) // a closed slot is nobody
			st.tallies[code] = tally
			st.mail[code] = invite.MailCounts{Pending: round * (i + 1), Sent: i, Failed: 1}
			st.last[code] = t0.Add(time.Duration(round*100+i) * time.Second)
			st.oldest[code] = t0.Add(time.Duration(i) * time.Second)
		}
	}
	check := func(round int) {
		t.Helper()
		for i := range n {
			code := fmt.Sprintf("c%d", i)
			u, m, read, err := b.get(code)
			want := invite.MailCounts{Pending: round * (i + 1), Sent: i, Failed: 1, OldestPending: st.oldest[code]}
			if err != nil || !read || u.Used != round*(i+1) || !u.LastRedemption.Equal(st.last[code]) || m != want {
				t.Fatalf("round %d, %s: %+v %+v read=%v err=%v; want used %d, latest %v, mail %+v",
					round, code, u, m, read, err, round*(i+1), st.last[code], want)
			}
		}
	}

	for round := 1; round <= 3; round++ {
		crowd(round)
		st.calls = map[string]int{}
		st.detailed, st.pending = nil, nil
		woken, all := b.refresh(ctx)
		if len(woken) != n || all {
			t.Fatalf("round %d woke %d codes (all=%v), want the %d that changed", round, len(woken), all, n)
		}
		if st.calls["tallies"] != 1 || st.calls["mail"] != 1 || st.calls["times"] != 1 || len(st.calls) != 3 {
			t.Fatalf("round %d, %d changed codes: %v; want the two summaries and one read of the times", round, n, st.calls)
		}
		if len(st.detailed) != n || len(st.pending) != 0 {
			t.Fatalf("round %d: latest read for %d codes, pending alone for %v", round, len(st.detailed), st.pending)
		}
		check(round)
	}

	// The emails go out, nobody redeems: the latest redemptions stay as
	// read, only the oldest pending emails are read again.
	for i := range n {
		code := fmt.Sprintf("c%d", i)
		st.mail[code] = invite.MailCounts{Pending: 3*(i+1) - 1, Sent: i + 1, Failed: 1}
		st.oldest[code] = t0.Add(time.Duration(i+1) * time.Second)
	}
	st.last = map[string]time.Time{} // not read again
	st.calls = map[string]int{}
	st.detailed, st.pending = nil, nil
	if woken, _ := b.refresh(ctx); len(woken) != n {
		t.Fatalf("mail moved on: woke %d codes", len(woken))
	}
	if st.calls["times"] != 1 || len(st.detailed) != 0 || len(st.pending) != n {
		t.Fatalf("mail moved on: %v, latest read for %v, pending for %d codes; want one read of the pending emails only", st.calls, st.detailed, len(st.pending))
	}
	if u, m, _, _ := b.get("c4"); u.Used != 15 || u.LastRedemption.IsZero() || m.Sent != 5 || !m.OldestPending.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("c4 after its mail moved on: %+v %+v", u, m)
	}

	// Every email sent: nothing left to read beyond the summaries.
	for i := range n {
		st.mail[fmt.Sprintf("c%d", i)] = invite.MailCounts{Sent: 3*(i+1) + i, Failed: 1}
	}
	st.calls = map[string]int{}
	b.refresh(ctx)
	if st.calls["times"] != 0 {
		t.Fatalf("nothing pending, no tally changed: %v", st.calls)
	}
	if _, m, _, _ := b.get("c4"); m != (invite.MailCounts{Sent: 19, Failed: 1}) {
		t.Fatalf("c4 with every email sent: %+v", m)
	}

	// A read of the times that fails while MongoDB answers keeps the last
	// good board, and the codes are read at the next refresh.
	st.tallies["c1"] += invite.Tally(invite.TallyOf(invite.SlotID("c1", 500), "late", false))
	st.last["c1"] = t0.Add(time.Hour)
	st.timesErr = context.DeadlineExceeded
	if woken, all := b.refresh(ctx); len(woken) > 0 || all {
		t.Fatalf("a failed read of the times woke %v (all=%v)", woken, all)
	}
	if u, _, read, err := b.get("c1"); err != nil || !read || u.Used != 6 {
		t.Fatalf("c1 during a failed read: %+v read=%v err=%v; want the last good figures", u, read, err)
	}
	st.timesErr = nil
	if woken, _ := b.refresh(ctx); !slices.Equal(woken, []string{"c1"}) {
		t.Fatalf("after the failed read: woke %v, want c1", woken)
	}
	if u, _, _, _ := b.get("c1"); u.Used != 7 || !u.LastRedemption.Equal(t0.Add(time.Hour)) {
		t.Fatalf("c1 after the failed read: %+v", u)
	}
}
