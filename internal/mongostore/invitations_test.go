package mongostore_test

import (
	"context"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// The operator's resync writes nothing when MongoDB holds the invitation as
// specified, and writes again when someone changed the document.
func TestHoldsInvitation(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	inv := invite.Invitation{Code: "held", MaxUses: 10, State: invite.StateActive, Campaign: "x", Owner: "ns/held",
		ExpiresAt: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC), MailTemplates: map[string]string{"en.subject": "Hi {{.Code}}"}}
	if holds, err := s.HoldsInvitation(ctx, inv); err != nil || holds {
		t.Fatalf("before any write: %v, %v", holds, err)
	}
	if err := s.PutInvitation(ctx, inv); err != nil {
		t.Fatal(err)
	}
	if holds, err := s.HoldsInvitation(ctx, inv); err != nil || !holds {
		t.Fatalf("after PutInvitation: %v, %v", holds, err)
	}
	for name, change := range map[string]func(*invite.Invitation){
		"maxUses":   func(i *invite.Invitation) { i.MaxUses = 9 },
		"state":     func(i *invite.Invitation) { i.State = invite.StatePaused },
		"campaign":  func(i *invite.Invitation) { i.Campaign = "y" },
		"owner":     func(i *invite.Invitation) { i.Owner = "ns/other" },
		"expiry":    func(i *invite.Invitation) { i.ExpiresAt = time.Time{} },
		"templates": func(i *invite.Invitation) { i.MailTemplates = nil },
	} {
		other := inv
		change(&other)
		if holds, err := s.HoldsInvitation(ctx, other); err != nil || holds {
			t.Errorf("%s differs, yet held: %v, %v", name, holds, err)
		}
	}
}
