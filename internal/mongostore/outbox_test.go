package mongostore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

// A code's redemption times come back oldest first, without the other
// codes' and without closed placeholders (which have none).
func TestRedemptionTimes(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	if err := s.PutInvitation(ctx, inv("a", 100)); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	var cs []invite.Redemption
	var want []time.Time
	for i := range 6 {
		code := []string{"a", "b"}[i%2]
		c := claim(code, 90+i, fmt.Sprintf("p%d@x.io", i), fmt.Sprint(i))
		c.RedeemedAt = base.Add(time.Duration(5-i) * time.Second) // newest first
		cs = append(cs, c)
		if code == "a" {
			want = append([]time.Time{c.RedeemedAt}, want...)
		}
	}
	s.Claim(ctx, cs)
	if err := s.PutInvitation(ctx, inv("a", 10)); err != nil { // closes the free slots of a below 100
		t.Fatal(err)
	}
	got, err := s.RedemptionTimes(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("times %v, want %v", got, want)
	}
	for i := range want {
		if !got[i].Equal(want[i]) {
			t.Fatalf("times %v, want %v", got, want)
		}
	}
	if got, err := s.RedemptionTimes(ctx, "none"); err != nil || len(got) != 0 {
		t.Fatalf("a code without redemptions: %v, %v", got, err)
	}
}

// The test bed is recognised: there the nonce is checked on a read by _id
// instead of in a filter that makes the server scan the collection.
func TestTheTestBedUpdatesByID(t *testing.T) {
	s := newStore(t)
	if got := mongostore.UpdatesReadThenWritten(context.Background(), s); got != !mongoServer.External {
		t.Fatalf("updates read then written: %v on %s", got, map[bool]string{true: "an external server", false: "the FerretDB test bed"}[mongoServer.External])
	}
	for version, want := range map[string]bool{"v1.24.0": true, "1.0.0": true, "unknown": true, "": true, "v2.0.0": false, "2.1.0": false, "v10.0": false} {
		if got := mongostore.FerretDBv1(version); got != want {
			t.Errorf("FerretDB version %q taken for v1: %v, want %v", version, got, want)
		}
	}
}
