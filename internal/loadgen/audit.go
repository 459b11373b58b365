package loadgen

import (
	"context"
	"fmt"
	"net/http"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Storage is what the audit reads.
type Storage interface {
	Invitations(ctx context.Context) ([]invite.Invitation, error)
	Redemptions(ctx context.Context, code string) ([]invite.Redemption, error)
}

// Audit checks the invariants after a crowd on codes:
//   - no code has more redemptions than its maxUses;
//   - no canonical email is stored twice, across all the codes;
//   - every email answered 201 or 200 for a code is stored for that code,
//     and no person was answered 201 twice (nothing acknowledged is lost);
//   - every stored redemption was answered 201 or 200, belongs to a request
//     that got no answer (which may have landed), or was there before the run
//     (before: canonical emails already stored then; see Snapshot).
//
// It returns the violations; none means the audit is clean.
func Audit(ctx context.Context, store Storage, codes []string, r Result, folding invite.Folding, before map[string]bool) ([]string, error) {
	invs, err := store.Invitations(ctx)
	if err != nil {
		return nil, err
	}
	maxUses := map[string]int{}
	for _, inv := range invs {
		maxUses[inv.Code] = inv.MaxUses
	}
	type key struct{ code, email string }
	acknowledged := map[key]bool{}
	created := map[string]int{}
	unanswered := map[string]bool{}
	var violations []string
	for _, o := range r.Outcomes {
		email, err := invite.ParseEmail(o.Email, folding)
		switch {
		case err != nil && (o.Status == http.StatusCreated || o.Status == http.StatusOK):
			violations = append(violations, fmt.Sprintf("%d for an invalid email %q", o.Status, o.Email))
		case err != nil:
		case o.Status == http.StatusCreated || o.Status == http.StatusOK:
			acknowledged[key{o.Code, email.Canonical}] = true
			if o.Status == http.StatusCreated {
				created[email.Canonical]++
			}
		case o.Status == 0 || o.Status >= 500:
			unanswered[email.Canonical] = true
		}
	}
	for e, n := range created {
		if n > 1 {
			violations = append(violations, fmt.Sprintf("201 %d times for %s", n, e))
		}
	}
	stored := map[key]bool{}
	owner := map[string]string{}
	for _, code := range codes {
		rs, err := store.Redemptions(ctx, code)
		if err != nil {
			return nil, err
		}
		if m, ok := maxUses[code]; !ok || len(rs) > m {
			violations = append(violations, fmt.Sprintf("%s: %d redemptions stored for %d slots", code, len(rs), m))
		}
		for _, s := range rs {
			e := s.Email.Canonical
			if other, dup := owner[e]; dup {
				violations = append(violations, fmt.Sprintf("%s stored twice (%s and %s)", e, other, code))
			}
			owner[e] = code
			stored[key{code, e}] = true
			if !acknowledged[key{code, e}] && !unanswered[e] && !before[e] {
				violations = append(violations, fmt.Sprintf("%s stored for %s but never acknowledged", e, code))
			}
		}
	}
	for k := range acknowledged {
		if !stored[k] {
			violations = append(violations, fmt.Sprintf("%s acknowledged for %s but not stored (lost)", k.email, k.code))
		}
	}
	return violations, nil
}

// Snapshot returns the canonical emails already stored for codes, to pass to
// Audit as before when a run starts on codes with a history.
func Snapshot(ctx context.Context, store Storage, codes []string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, code := range codes {
		rs, err := store.Redemptions(ctx, code)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			out[r.Email.Canonical] = true
		}
	}
	return out, nil
}
