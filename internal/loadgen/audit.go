package loadgen

import (
	"context"
	"fmt"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Redemptions lists what storage holds for a code.
type Redemptions interface {
	Redemptions(ctx context.Context, code string) ([]invite.Redemption, error)
}

// Audit checks the invariants of one code after a crowd: at most maxUses
// redemptions, one per canonical email, every 201 stored, and every stored
// redemption answered 201 unless some requests got no answer at all
// (transport errors, which may have landed). It returns the violations.
func Audit(ctx context.Context, store Redemptions, code string, maxUses int, r Result, folding invite.Folding) ([]string, error) {
	stored, err := store.Redemptions(ctx, code)
	if err != nil {
		return nil, err
	}
	var violations []string
	if len(stored) > maxUses {
		violations = append(violations, fmt.Sprintf("%d redemptions stored for %d slots", len(stored), maxUses))
	}
	answered := map[string]bool{}
	for _, e := range r.Answered {
		email, err := invite.ParseEmail(e, folding)
		if err != nil {
			violations = append(violations, fmt.Sprintf("201 for an invalid email %q", e))
			continue
		}
		if answered[email.Canonical] {
			violations = append(violations, fmt.Sprintf("201 twice for %s", email.Canonical))
		}
		answered[email.Canonical] = true
	}
	seen := map[string]bool{}
	for _, s := range stored {
		if seen[s.Email.Canonical] {
			violations = append(violations, fmt.Sprintf("%s stored twice", s.Email.Canonical))
		}
		seen[s.Email.Canonical] = true
		if !answered[s.Email.Canonical] && r.Statuses[0] == 0 {
			violations = append(violations, fmt.Sprintf("%s stored but never answered 201", s.Email.Canonical))
		}
	}
	for e := range answered {
		if !seen[e] {
			violations = append(violations, fmt.Sprintf("%s answered 201 but not stored (acknowledged and lost)", e))
		}
	}
	return violations, nil
}
