package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// countingStore counts what the usage board asks; a pure unit test of the
// board's bookkeeping (the suite runs it against the test bed).
type countingStore struct {
	Store
	tallies map[string]invite.Tally
	calls   map[string]int
}

func (s *countingStore) Tallies(context.Context) (map[string]invite.Tally, error) {
	s.calls["tallies"]++
	return s.tallies, nil
}

func (s *countingStore) MailByCode(context.Context) (map[string]invite.MailCounts, error) {
	s.calls["mail"]++
	return nil, nil
}

func (s *countingStore) BalanceSlots(context.Context, string) error { s.calls["balance"]++; return nil }

func (s *countingStore) Usage(context.Context, string) (invite.Usage, error) {
	s.calls["usage"]++
	return invite.Usage{}, nil
}

func (s *countingStore) MailCounts(context.Context, string) (invite.MailCounts, error) {
	s.calls["mailcounts"]++
	return invite.MailCounts{}, nil
}

func TestUsageBoardCostsOnlyChanges(t *testing.T) {
	now := time.Unix(0, 0)
	st := &countingStore{tallies: map[string]invite.Tally{}, calls: map[string]int{}}
	b := newUsageBoard(st, 10*time.Second, func() time.Time { return now })
	pass := func() {
		for i := range 300 {
			if _, _, err := b.get(context.Background(), fmt.Sprintf("c%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	pass()
	if st.calls["tallies"] != 1 || st.calls["usage"] != 300 {
		t.Fatalf("first pass: %v; want one aggregation and each code read once", st.calls)
	}
	now = now.Add(time.Minute) // idle for a while
	pass()
	pass()
	if st.calls["tallies"] != 2 || st.calls["usage"] != 300 {
		t.Fatalf("idle passes: %v; want one more aggregation and no per-code reads", st.calls)
	}
	st.tallies["c7"] = invite.Tally(invite.TallyOf("c7#0", "n", false)) // someone redeemed c7
	now = now.Add(time.Minute)
	pass()
	if st.calls["usage"] != 301 || st.calls["balance"] != 301 {
		t.Fatalf("after one change: %v; want c7 read and balanced again, nothing else", st.calls)
	}
}
