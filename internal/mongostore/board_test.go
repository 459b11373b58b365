package mongostore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// What the operator's usage board reads per refresh (the two summaries and
// one CodeTimes for every changed code) says what the per-code reads it
// replaced said: Usage (a count and the latest redemption) and MailCounts
// (three counts and the oldest pending email), closed slots and other codes
// left out.
func TestCodeTimesAndSummariesAgreeWithPerCodeReads(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	if err := s.PutInvitation(ctx, inv("a", 100)); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	var cs []invite.Redemption
	for i := range 12 {
		code := []string{"a", "b", "c"}[i%3]
		c := claim(code, 90+i, fmt.Sprintf("p%d@x.io", i), fmt.Sprint(i))
		c.RedeemedAt = base.Add(time.Duration((i*7)%12) * time.Second) // neither oldest nor newest first
		cs = append(cs, c)
	}
	for _, r := range s.Claim(ctx, cs) {
		if r.Status != invite.ClaimInserted {
			t.Fatalf("claim: %+v", r)
		}
	}
	if err := s.PutInvitation(ctx, inv("a", 10)); err != nil { // closes a's free slots below 100
		t.Fatal(err)
	}
	// a's and b's oldest emails are sent, one of b's failed: the oldest
	// pending is no longer the oldest redemption.
	for _, code := range []string{"a", "b"} {
		var oldest invite.Redemption
		for _, c := range cs {
			if c.Code == code && (oldest.Code == "" || c.RedeemedAt.Before(oldest.RedeemedAt)) {
				oldest = c
			}
		}
		if err := s.RecordAttempt(ctx, oldest, invite.Attempt{Number: 1, State: invite.MailSent, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		if c.Code == "b" && c.Slot == 94 {
			if err := s.RecordAttempt(ctx, c, invite.Attempt{Number: 1, State: invite.MailFailed, At: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
	}

	last, oldest, err := s.CodeTimes(ctx, []string{"a", "none"}, []string{"b", "none"})
	if err != nil {
		t.Fatal(err)
	}
	tallies, err := s.Tallies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mail, err := s.MailByCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"a", "b"} {
		u, err := s.Usage(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.MailCounts(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		if got := tallies[code].Used(); got != u.Used || got != 4 {
			t.Errorf("%s: the tally says %d used, Usage %d; want 4", code, got, u.Used)
		}
		if got := mail[code]; got != (invite.MailCounts{Pending: m.Pending, Sent: m.Sent, Failed: m.Failed}) {
			t.Errorf("%s: MailByCode %+v, MailCounts %+v", code, got, m)
		}
		if m.OldestPending.IsZero() || !oldest[code].Equal(m.OldestPending) {
			t.Errorf("%s: oldest pending %v, MailCounts says %v", code, oldest[code], m.OldestPending)
		}
		if code == "a" && (u.LastRedemption.IsZero() || !last[code].Equal(u.LastRedemption)) {
			t.Errorf("%s: latest redemption %v, Usage says %v", code, last[code], u.LastRedemption)
		}
	}
	if _, ok := last["b"]; ok {
		t.Errorf("b's latest redemption read, though only its pending mail was asked: %v", last)
	}
	for _, code := range []string{"c", "none"} {
		if _, ok := last[code]; ok {
			t.Errorf("%s in last: %v", code, last)
		}
		if _, ok := oldest[code]; ok {
			t.Errorf("%s in oldestPending: %v", code, oldest)
		}
	}

	// Only latest, only pending, nothing: each its own filter.
	if last, oldest, err := s.CodeTimes(ctx, []string{"c"}, nil); err != nil || len(last) != 1 || len(oldest) != 1 {
		t.Errorf("c alone: %v %v %v", last, oldest, err)
	}
	if last, oldest, err := s.CodeTimes(ctx, nil, []string{"c"}); err != nil || len(last) != 0 || len(oldest) != 1 {
		t.Errorf("c's pending alone: %v %v %v", last, oldest, err)
	}
	if last, oldest, err := s.CodeTimes(ctx, nil, nil); err != nil || len(last) != 0 || len(oldest) != 0 {
		t.Errorf("nothing asked: %v %v %v", last, oldest, err)
	}
}
