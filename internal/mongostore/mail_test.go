package mongostore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

func TestMailOutbox(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	a, b := claim("c", 0, "a@x.io", "1"), claim("c", 1, "b@x.io", "2")
	a.RedeemedAt, b.RedeemedAt, a.Lang = at, at.Add(time.Second), "ru"
	s.Claim(ctx, []invite.Redemption{a, b})

	due, err := s.DueMail(ctx, time.Now(), 10)
	if err != nil || len(due) != 2 || due[0].Email.Canonical != "a@x.io" || due[0].Lang != "ru" || due[0].Attempts != 0 {
		t.Fatalf("every redemption is its own outbox entry, oldest first: %+v, %v", due, err)
	}
	if oldest, err := s.OldestPendingMail(ctx); err != nil || !oldest.Equal(at) {
		t.Fatalf("oldest pending %v, %v; want %v", oldest, err, at)
	}

	// Ten dispatchers race for attempt 1 of a's email: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	lease := time.Now().Add(time.Minute)
	for range 10 {
		wg.Go(func() {
			ok, held, err := s.ClaimAttempt(ctx, a.Nonce, 1, "d", lease)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			} else if !held.Equal(lease.Truncate(time.Millisecond)) && !held.Equal(lease) {
				t.Errorf("a loser must learn the winner's lease: %v", held)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d dispatchers won attempt 1", wins.Load())
	}

	if err := s.RecordAttempt(ctx, a, invite.Attempt{Number: 1, State: invite.MailSent, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	retryAt := time.Now().Add(time.Hour)
	if err := s.RecordAttempt(ctx, b, invite.Attempt{Number: 1, State: invite.MailPending, NextAt: retryAt, Error: "421 try later", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.DueMail(ctx, time.Now(), 10); len(due) != 0 {
		t.Fatalf("nothing is due: one sent, one retrying in an hour: %+v", due)
	}
	if due, _ := s.DueMail(ctx, retryAt.Add(time.Second), 10); len(due) != 1 || due[0].Attempts != 1 {
		t.Fatalf("the retry is due after its time: %+v", due)
	}
	if c, err := s.MailCounts(ctx, "c"); err != nil || c != (invite.MailCounts{Pending: 1, Sent: 1, OldestPending: b.RedeemedAt.Truncate(time.Millisecond).UTC()}) {
		t.Fatalf("counts %+v, %v", c, err)
	}
}

// A revoked slot is taken again by someone else: the attempts made for the
// person before neither land on the new holder's document nor count for it;
// their own do. Both ways of recording an attempt: the nonce in the filter
// (MongoDB's) and checked on a read by _id (the test bed's).
func TestMailFollowsTheRedemptionNotTheSlot(t *testing.T) {
	for _, readThenWrite := range []bool{false, true} {
		t.Run(fmt.Sprint("readThenWrite=", readThenWrite), func(t *testing.T) {
			s, ctx := newStore(t), context.Background()
			mongostore.SetUpdatesReadThenWritten(s, readThenWrite)
			old := claim("c", 0, "old@x.io", "n-old")
			s.Claim(ctx, []invite.Redemption{old})
			if ok, _, err := s.ClaimAttempt(ctx, old.Nonce, 1, "d", time.Now().Add(time.Minute)); !ok || err != nil {
				t.Fatalf("claiming attempt 1 for the first holder: %v %v", ok, err)
			}
			if _, err := s.Revoke(ctx, "", "old@x.io"); err != nil {
				t.Fatal(err)
			}
			next := claim("c", 0, "next@x.io", "n-next")
			if r := s.Claim(ctx, []invite.Redemption{next}); r[0].Status != invite.ClaimInserted {
				t.Fatalf("the freed slot is taken again: %+v", r[0])
			}
			// The send in flight for the revoked person finishes now.
			if err := s.RecordAttempt(ctx, old, invite.Attempt{Number: 1, State: invite.MailSent, At: time.Now()}); err != nil {
				t.Fatal(err)
			}
			due, err := s.DueMail(ctx, time.Now(), 10)
			if err != nil || len(due) != 1 || due[0].Email.Canonical != "next@x.io" || due[0].Attempts != 0 {
				t.Fatalf("the new holder's email is still due, with no attempts inherited: %+v, %v", due, err)
			}
			if ok, _, err := s.ClaimAttempt(ctx, next.Nonce, 1, "d", time.Now().Add(time.Minute)); !ok || err != nil {
				t.Fatalf("attempt 1 of the new holder is free: %v %v", ok, err)
			}
			if err := s.RecordAttempt(ctx, next, invite.Attempt{Number: 1, State: invite.MailSent, At: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if c, err := s.MailCounts(ctx, "c"); err != nil || c != (invite.MailCounts{Sent: 1}) {
				t.Fatalf("the new holder's own attempt is recorded: %+v, %v", c, err)
			}
		})
	}
}
