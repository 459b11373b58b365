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
	calls    map[string]int
	sumErr   error // what Tallies answers, when set
	pingErr  error
	detailed []string // codes read in detail
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
	return nil, nil
}

func (s *countingStore) Usage(_ context.Context, code string) (invite.Usage, error) {
	s.calls["usage"]++
	s.detailed = append(s.detailed, code)
	return invite.Usage{Used: s.tallies[code].Used()}, nil
}

func (s *countingStore) MailCounts(context.Context, string) (invite.MailCounts, error) {
	s.calls["mailcounts"]++
	return invite.MailCounts{}, nil
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
	if st.calls["tallies"] != 1 || st.calls["usage"] != 1 || all {
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
	if st.calls["tallies"] != 4 || st.calls["usage"] != 1 {
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
