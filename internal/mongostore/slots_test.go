package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

func inv(code string, maxUses int) invite.Invitation {
	return invite.Invitation{Code: code, MaxUses: maxUses, State: invite.StateActive, Campaign: "c", Owner: "ns/" + code}
}

// free counts the slots below maxUses a replica could still take.
func free(t *testing.T, s *mongostore.Store, code string, maxUses int) int {
	t.Helper()
	occ, err := s.Occupants(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	n := maxUses
	for _, o := range occ {
		if o.Slot < maxUses {
			n--
		}
	}
	return n
}

func TestLoweringClosesSlotsAndTalliesAddUp(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	if err := s.PutInvitation(ctx, inv("low", 100)); err != nil {
		t.Fatal(err)
	}
	var cs []invite.Redemption
	for i := range 6 {
		cs = append(cs, claim("low", 90+i, fmt.Sprintf("p%d@x.io", i), fmt.Sprint(i)))
	}
	s.Claim(ctx, cs)
	if err := s.PutInvitation(ctx, inv("low", 10)); err != nil {
		t.Fatal(err)
	}
	if got := free(t, s, "low", 10); got != 4 {
		t.Fatalf("%d free slots below 10 with 6 holders above, want 4", got)
	}
	if n, _ := s.Used(ctx, "low"); n != 6 {
		t.Fatalf("used %d: placeholders are nobody", n)
	}
	tallies, err := s.Tallies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	occ, _ := s.Occupants(ctx, "low")
	var sum int64
	for _, o := range occ {
		sum += o.Tally
	}
	if got := tallies["low"]; int64(got) != sum || got.Used() != 6 || got.Docs() != 96 {
		t.Fatalf("tally %d (docs %d, used %d), the slots sum to %d; want 96 documents (6 people, 90 closed), 4 slots free", got, got.Docs(), got.Used(), sum)
	}
	if rs, _ := s.Redemptions(ctx, "low"); len(rs) != 6 {
		t.Fatalf("%d redemptions listed, want the 6 people", len(rs))
	}
	if due, _ := s.DueMail(ctx, time.Now().Add(time.Hour), 1000); len(due) != 6 {
		t.Fatalf("%d emails due, want 6: placeholders get no mail", len(due))
	}
	if _, err := s.Revoke(ctx, "", "nobody@x.io"); !errors.Is(err, invite.ErrNotRedeemed) {
		t.Fatalf("revoking nobody: %v", err)
	}
}

// Data from before slot spaces were recorded (or an invitation document
// recreated by hand): holders above a lowered limit are found and
// compensated all the same, and old redemptions get their tally.
func TestOldDataIsBroughtUpToDate(t *testing.T) {
	db := mongoServer.Database(t)
	s, ctx := mongostore.New(db), context.Background()
	raw := db.Collection(mongostore.RedemptionsCollection)
	for i := range 4 {
		id := invite.SlotID("old", 50+i)
		if _, err := raw.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "code", Value: "old"}, {Key: "slot", Value: 50 + i},
			{Key: "email", Value: fmt.Sprintf("o%d@x.io", i)}, {Key: "nonce", Value: "n"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	tallies, err := s.Tallies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for i := range 4 {
		want += invite.TallyOf(invite.SlotID("old", 50+i), "n", false)
	}
	if int64(tallies["old"]) != want {
		t.Fatalf("tally %d after backfill, want %d", tallies["old"], want)
	}
	if err := s.PutInvitation(ctx, inv("old", 10)); err != nil { // no document said 100 before
		t.Fatal(err)
	}
	if got := free(t, s, "old", 10); got != 6 {
		t.Fatalf("%d free slots below 10 with 4 holders above, want 6", got)
	}
}
