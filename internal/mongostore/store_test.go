package mongostore_test

import (
	"context"
	"reflect"

	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

func newStore(t *testing.T, invs ...invite.Invitation) *mongostore.Store {
	return mongoServer.Store(t, invs...)
}

func claim(code string, slot int, email, nonce string) invite.Redemption {
	return invite.Redemption{
		Code: code, Slot: slot, Nonce: nonce, RedeemedAt: time.Now(),
		Email: invite.Email{Canonical: email, Raw: email},
	}
}

func TestPutAndListInvitations(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	exp := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	want := []invite.Invitation{
		{Code: "a", MaxUses: 10, State: invite.StateActive, Campaign: "x"},
		{Code: "b", MaxUses: 1000, State: invite.StatePaused, Campaign: "y", ExpiresAt: exp},
	}
	for _, inv := range want {
		if err := s.PutInvitation(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	want[0].MaxUses = 20 // replace, not duplicate
	if err := s.PutInvitation(ctx, want[0]); err != nil {
		t.Fatal(err)
	}
	got, err := s.Invitations(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("Invitations = %v, %v", got, err)
	}
	for i := range got {
		if got[i].UpdatedAt.IsZero() {
			t.Errorf("%s: updatedAt not set", got[i].Code)
		}
		got[i].UpdatedAt = time.Time{}
		if !got[i].ExpiresAt.Equal(want[i].ExpiresAt) {
			t.Errorf("%s: expiresAt %v, want %v", got[i].Code, got[i].ExpiresAt, want[i].ExpiresAt)
		}
		got[i].ExpiresAt, want[i].ExpiresAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("got %+v, want %+v", got[i], want[i])
		}
	}
}

func TestClaimClassifiesEveryConflict(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	first := s.Claim(ctx, []invite.Redemption{
		claim("c", 0, "alice@example.com", "n-alice"),
		claim("d", 0, "bob@example.com", "n-bob"),
	})
	for i, r := range first {
		if r.Status != invite.ClaimInserted {
			t.Fatalf("setup claim %d: %+v", i, r)
		}
	}

	claims := []invite.Redemption{
		claim("c", 1, "carol@example.com", "n-carol"),  // free slot, new person
		claim("c", 0, "dave@example.com", "n-dave"),    // slot held by alice
		claim("c", 2, "alice@example.com", "n-alice2"), // alice again, same code
		claim("c", 3, "bob@example.com", "n-bob2"),     // bob, who holds code d
		claim("c", 0, "alice@example.com", "n-alice"),  // alice's own write, retried
		claim("c", 0, "alice@example.com", "n-alice3"), // alice again on her own slot
		claim("c", 1, "erin@example.com", "n-erin"),    // slot carol takes in this batch
	}
	got := s.Claim(ctx, claims)
	// A free slot does not explain a duplicate: the email does, and
	// ExplainEmails says whose it is.
	for i, r := range got {
		if r.Status == invite.ClaimEmailConflict {
			got[i] = s.ExplainEmails(ctx, claims[i:i+1])[0]
		}
	}
	want := []struct {
		status invite.ClaimStatus
		holder string // holder's email and code, for conflicts
		code   string
	}{
		{invite.ClaimInserted, "", ""},
		{invite.ClaimSlotTaken, "alice@example.com", "c"},
		{invite.ClaimEmailTaken, "alice@example.com", "c"},
		{invite.ClaimEmailTaken, "bob@example.com", "d"},
		{invite.ClaimInserted, "", ""},
		{invite.ClaimEmailTaken, "alice@example.com", "c"}, // the person decides, before the slot
		{invite.ClaimSlotTaken, "carol@example.com", "c"},
	}
	for i, w := range want {
		r := got[i]
		if r.Status != w.status || r.Holder.Email.Canonical != w.holder || r.Holder.Code != w.code {
			t.Errorf("claim %d: got %+v, want status %v holder %s/%s", i, r, w.status, w.holder, w.code)
		}
	}
	if n, err := s.Used(ctx, "c"); err != nil || n != 2 {
		t.Errorf("Used(c) = %d, %v; want 2", n, err)
	}
	rs, err := s.Redemptions(ctx, "c")
	if err != nil || len(rs) != 2 {
		t.Fatalf("Redemptions(c) = %v, %v", rs, err)
	}
}

func TestClaimIsAtomicUnderConcurrency(t *testing.T) {
	// 3,000 people, 1,000 slots, batches raced from 16 goroutines with slots
	// chosen at random so many collide: exactly 1,000 stored, nobody twice.
	s, ctx := newStore(t), context.Background()
	const people, slots, workers, batch = 3000, 1000, 16, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	inserted := map[string]bool{}
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for start := w * people / workers; start < (w+1)*people/workers; start += batch {
				var claims []invite.Redemption
				for p := start; p < min(start+batch, (w+1)*people/workers); p++ {
					email := fmt.Sprintf("p%d@example.com", p%2500) // some people twice
					claims = append(claims, claim("storm", rng.IntN(slots), email, fmt.Sprint(p)))
				}
				for i, r := range s.Claim(ctx, claims) {
					if r.Status == invite.ClaimFailed {
						t.Errorf("claim failed: %v", r.Err)
					}
					if r.Status == invite.ClaimInserted {
						mu.Lock()
						if inserted[claims[i].Email.Canonical] {
							t.Errorf("%s inserted twice", claims[i].Email.Canonical)
						}
						inserted[claims[i].Email.Canonical] = true
						mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()
	rs, err := s.Redemptions(ctx, "storm")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) > slots || len(rs) != len(inserted) {
		t.Fatalf("stored %d redemptions, acknowledged %d, slots %d", len(rs), len(inserted), slots)
	}
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.Email.Canonical] || !inserted[r.Email.Canonical] {
			t.Fatalf("stored %s twice or without acknowledgement", r.Email.Canonical)
		}
		seen[r.Email.Canonical] = true
	}
}

func TestUnreachableServerIsUnavailable(t *testing.T) {
	client, err := mongostore.Connect("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	s := mongostore.New(client.Database("x"))
	ctx := context.Background()
	if err := s.Ping(ctx); !errors.Is(err, invite.ErrUnavailable) {
		t.Errorf("Ping = %v, want ErrUnavailable", err)
	}
	if _, err := s.Invitations(ctx); !errors.Is(err, invite.ErrUnavailable) {
		t.Errorf("Invitations = %v, want ErrUnavailable", err)
	}
	for _, r := range s.Claim(ctx, []invite.Redemption{claim("c", 0, "a@example.com", "n")}) {
		if r.Status != invite.ClaimFailed || !errors.Is(r.Err, invite.ErrUnavailable) {
			t.Errorf("Claim = %+v, want failed with ErrUnavailable", r)
		}
	}
}

func TestEnsureIndexesIsIdempotent(t *testing.T) {
	// Every replica ensures the indexes when it starts.
	s := newStore(t)
	for i := range 3 {
		if err := s.EnsureIndexes(context.Background()); err != nil {
			t.Fatalf("round %d: %v\n%s", i, err, mongoServer.Logs())
		}
	}
}

func TestUsage(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	if u, err := s.Usage(ctx, "c"); err != nil || u.Used != 0 || !u.LastRedemption.IsZero() {
		t.Fatalf("empty: %+v, %v", u, err)
	}
	early, late := claim("c", 0, "a@x.io", "1"), claim("c", 1, "b@x.io", "2")
	early.RedeemedAt, late.RedeemedAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	s.Claim(ctx, []invite.Redemption{late, early, claim("d", 0, "c@x.io", "3")})
	if u, err := s.Usage(ctx, "c"); err != nil || u.Used != 2 || !u.LastRedemption.Equal(late.RedeemedAt) {
		t.Fatalf("got %+v, %v; want 2 used, last %v", u, err, late.RedeemedAt)
	}
}

func TestACodeHasOneOwner(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	mine := invite.Invitation{Code: "c", MaxUses: 10, State: invite.StateActive, Owner: "ns1/a"}
	if err := s.PutInvitation(ctx, mine); err != nil {
		t.Fatal(err)
	}
	theirs := mine
	theirs.Owner, theirs.MaxUses = "ns2/b", 999
	if err := s.PutInvitation(ctx, theirs); !errors.Is(err, invite.ErrCodeTaken) {
		t.Fatalf("another owner: %v, want ErrCodeTaken", err)
	}
	mine.MaxUses = 20
	if err := s.PutInvitation(ctx, mine); err != nil {
		t.Fatalf("the owner updating: %v", err)
	}
	invs, err := s.Invitations(ctx)
	if err != nil || len(invs) != 1 || invs[0].MaxUses != 20 || invs[0].Owner != "ns1/a" {
		t.Fatalf("stored %+v, %v", invs, err)
	}
}

func TestUnownedInvitationIsAdopted(t *testing.T) {
	// A document from before owners were recorded has no owner field.
	db := mongoServer.Database(t)
	s, ctx := mongostore.New(db), context.Background()
	if _, err := db.Collection(mongostore.InvitationsCollection).InsertOne(ctx, bson.D{{Key: "_id", Value: "old"}, {Key: "maxUses", Value: 5}, {Key: "state", Value: "active"}}); err != nil {
		t.Fatal(err)
	}
	adopted := invite.Invitation{Code: "old", MaxUses: 7, State: invite.StateActive, Owner: "ns/old"}
	if err := s.PutInvitation(ctx, adopted); err != nil {
		t.Fatalf("adopting an unowned code: %v", err)
	}
	other := adopted
	other.Owner = "ns/other"
	if err := s.PutInvitation(ctx, other); !errors.Is(err, invite.ErrCodeTaken) {
		t.Fatalf("after adoption the code is owned: %v", err)
	}
}

func TestLeasesKeepReplicasApartUntilStale(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	got, err := s.Lease(ctx, "c", []int{0, 1}, "a", time.Minute)
	if err != nil || !got[0] || !got[1] {
		t.Fatalf("first lease: %v, %v; want both blocks", got, err)
	}
	got, err = s.Lease(ctx, "c", []int{1, 2}, "b", time.Minute)
	if err != nil || got[0] || !got[1] {
		t.Fatalf("second holder: %v, %v; want block 2 only", got, err)
	}
	if got, err = s.Lease(ctx, "c", []int{1}, "a", time.Minute); err != nil || !got[0] {
		t.Fatalf("holder asking again: %v, %v; want its block", got, err)
	}
	// A lease older than the ttl passes to whoever asks.
	if got, err = s.Lease(ctx, "c", []int{0}, "b", time.Nanosecond); err != nil || !got[0] {
		t.Fatalf("stale lease: %v, %v; want it taken over", got, err)
	}
	if got, err = s.Lease(ctx, "c", []int{0}, "a", time.Minute); err != nil || got[0] {
		t.Fatalf("after the takeover: %v, %v; want the block refused to its old holder", got, err)
	}
}

func TestExplainEmailsTrustsOnlyHintsThatHold(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	ann, bob := claim("c", 0, "ann@example.com", "n-ann"), claim("c", 1, "bob@example.com", "n-bob")
	for _, r := range s.Claim(ctx, []invite.Redemption{ann, bob}) {
		if r.Status != invite.ClaimInserted {
			t.Fatalf("setup: %+v", r)
		}
	}
	s.RecordHolders(ctx, []invite.Redemption{ann, bob})
	// Bob is revoked and Carol takes his slot: his hint now names her slot.
	if _, err := s.Revoke(ctx, "c", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	if r := s.Claim(ctx, []invite.Redemption{claim("c", 1, "carol@example.com", "n-carol")}); r[0].Status != invite.ClaimInserted {
		t.Fatalf("carol: %+v", r[0])
	}
	dave := claim("d", 0, "dave@example.com", "n-dave") // holds code d, no hint
	if r := s.Claim(ctx, []invite.Redemption{dave}); r[0].Status != invite.ClaimInserted {
		t.Fatalf("dave: %+v", r[0])
	}

	got := s.ExplainEmails(ctx, []invite.Redemption{
		claim("c", 5, "ann@example.com", "n-ann2"),   // hinted, holds
		claim("c", 6, "bob@example.com", "n-bob2"),   // stale hint: nobody holds bob
		claim("c", 7, "dave@example.com", "n-dave2"), // no hint: read by email
		claim("c", 0, "ann@example.com", "n-ann"),    // ann's own write, retried
	})
	want := []struct {
		status invite.ClaimStatus
		code   string
	}{{invite.ClaimEmailTaken, "c"}, {invite.ClaimRetry, ""}, {invite.ClaimEmailTaken, "d"}, {invite.ClaimInserted, "c"}}
	for i, w := range want {
		if got[i].Status != w.status || got[i].Holder.Code != w.code {
			t.Errorf("claim %d: got %+v, want status %v holder code %q", i, got[i], w.status, w.code)
		}
	}
}

func TestRevokingDropsTheHolderHint(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	first := claim("c", 0, "bob@example.com", "n-1")
	if r := s.Claim(ctx, []invite.Redemption{first}); r[0].Status != invite.ClaimInserted {
		t.Fatalf("setup: %+v", r[0])
	}
	s.RecordHolders(ctx, []invite.Redemption{first})
	if _, err := s.Revoke(ctx, "c", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	// Bob redeems again elsewhere: his new hint replaces nothing stale.
	again := claim("c", 7, "bob@example.com", "n-2")
	if r := s.Claim(ctx, []invite.Redemption{again}); r[0].Status != invite.ClaimInserted {
		t.Fatalf("again: %+v", r[0])
	}
	s.RecordHolders(ctx, []invite.Redemption{again})
	got := s.HintedHolders(ctx, []invite.Redemption{claim("c", 9, "bob@example.com", "n-3")})
	if got[0].Status != invite.ClaimEmailTaken || got[0].Holder.Slot != 7 {
		t.Fatalf("bob after his second redemption: %+v; want the hint to name slot 7", got[0])
	}
}
