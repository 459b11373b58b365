// Package invite is the VelvetRope domain: invitations, canonical emails,
// slot claims, redemption outcomes and the rules that decide them.
//
// It must never import a storage driver, net/http or Kubernetes packages: the
// adapters (internal/mongostore, internal/redeemer, controllers) depend on it,
// never the other way round. Its only non-standard imports are golang.org/x/net
// and golang.org/x/text, which the Go team maintains and the standard library
// itself vendors; they give IDN and Unicode normalisation for emails.
package invite

import (
	"fmt"
	"strconv"
	"time"
)

// State is the lifecycle state of an invitation as stored in MongoDB.
type State string

const (
	StateActive  State = "active"
	StatePaused  State = "paused"
	StateRevoked State = "revoked"
)

// MaxUsesLimit bounds Invitation.MaxUses; the CRD schema enforces the same range.
const MaxUsesLimit = 1000

// Invitation is one code and its limits.
type Invitation struct {
	Code      string
	MaxUses   int
	State     State
	ExpiresAt time.Time // zero: never expires
	Campaign  string
	// Owner names who manages the code (the operator writes
	// "<namespace>/<name>" of the Invitation object); one owner per code.
	Owner string
	// MailTemplates override the default email per part: keys are
	// "<lang>.<part>" with part subject, text or html (e.g. "ru.subject").
	MailTemplates map[string]string
	UpdatedAt     time.Time
}

// Expired reports whether the invitation has expired at now.
func (inv Invitation) Expired(now time.Time) bool {
	return !inv.ExpiresAt.IsZero() && !now.Before(inv.ExpiresAt)
}

// Open decides whether a new person may take a slot of inv now, given how many
// slots are known to be taken. The order matters: a revoked code says so even
// when it is also full, and a paused code is not reported full because pausing
// is the state staff changed last.
func (inv Invitation) Open(now time.Time, used int) error {
	if err := inv.Admits(now); err != nil {
		return err
	}
	if used >= inv.MaxUses {
		return ErrExhausted
	}
	return nil
}

// Admits is Open without the count: whether the code's state lets anyone in
// now (revoked, expired, paused or an unknown state do not).
//
// A person who already holds a slot of the code is answered "already
// redeemed" before any of this is asked, whatever the code's state: a retry is
// always safe (docs/api.md, order of checks).
func (inv Invitation) Admits(now time.Time) error {
	switch {
	case inv.State == StateRevoked:
		return ErrRevoked
	case inv.Expired(now):
		return ErrExpired
	case inv.State == StatePaused:
		return ErrPaused
	case inv.State != StateActive:
		return ErrRevoked // an unknown state never admits anyone
	}
	return nil
}

// Validate checks what storage must hold for an invitation to be served.
func (inv Invitation) Validate() error {
	switch {
	case !ValidCode(inv.Code):
		return fmt.Errorf("invalid code %q", inv.Code)
	case inv.MaxUses < 1 || inv.MaxUses > MaxUsesLimit:
		return fmt.Errorf("maxUses %d is outside 1..%d", inv.MaxUses, MaxUsesLimit)
	}
	return nil
}

// PublicStatus is what anybody may learn about a code.
type PublicStatus struct {
	Code      string
	Campaign  string
	State     string // active, paused, exhausted, expired or revoked
	Remaining int
}

// Status summarises inv for the public given the known usage.
func (inv Invitation) Status(now time.Time, used int) PublicStatus {
	st := PublicStatus{Code: inv.Code, Campaign: inv.Campaign, State: string(StateActive), Remaining: max(inv.MaxUses-used, 0)}
	switch inv.Open(now, used) {
	case ErrRevoked:
		st.State = string(StateRevoked)
	case ErrExpired:
		st.State = "expired"
	case ErrPaused:
		st.State = string(StatePaused)
	case ErrExhausted:
		st.State = "exhausted"
	}
	if st.State != string(StateActive) && st.State != string(StatePaused) {
		st.Remaining = 0
	}
	return st
}

// ValidCode reports whether s is a well-formed invitation code: 1 to 63
// lower-case letters, digits and inner hyphens (a DNS label, so a code can be a
// Kubernetes object name). Anything else can never name an invitation, so the
// HTTP layer answers 404 without looking further.
func ValidCode(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// SlotID names slot n of code. Slots are the unit of the capacity guarantee:
// slot IDs are unique keys in storage, so a code can never hold more
// redemptions than it has slots.
func SlotID(code string, slot int) string {
	return code + "#" + strconv.Itoa(slot)
}

// Usage is what storage knows about how a code was used.
type Usage struct {
	Used           int
	LastRedemption time.Time // zero: never
}
