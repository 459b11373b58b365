package invite

import (
	"errors"
	"testing"
	"time"
)

func TestOpen(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	active := Invitation{Code: "c", MaxUses: 10, State: StateActive}
	withExpiry := func(inv Invitation, at time.Time) Invitation { inv.ExpiresAt = at; return inv }
	withState := func(inv Invitation, s State) Invitation { inv.State = s; return inv }
	tests := []struct {
		name string
		inv  Invitation
		used int
		want error
		st   PublicStatus
	}{
		{"open", active, 3, nil, PublicStatus{Code: "c", State: "active", Remaining: 7}},
		{"last slot", active, 9, nil, PublicStatus{Code: "c", State: "active", Remaining: 1}},
		{"full", active, 10, ErrExhausted, PublicStatus{Code: "c", State: "exhausted", Remaining: 0}},
		{"over after maxUses lowered", active, 12, ErrExhausted, PublicStatus{Code: "c", State: "exhausted", Remaining: 0}},
		{"expires later", withExpiry(active, now.Add(time.Second)), 0, nil, PublicStatus{Code: "c", State: "active", Remaining: 10}},
		{"expired at the instant", withExpiry(active, now), 0, ErrExpired, PublicStatus{Code: "c", State: "expired", Remaining: 0}},
		{"paused", withState(active, StatePaused), 1, ErrPaused, PublicStatus{Code: "c", State: "paused", Remaining: 9}},
		{"paused beats full", withState(active, StatePaused), 10, ErrPaused, PublicStatus{Code: "c", State: "paused", Remaining: 0}},
		{"revoked beats all", withExpiry(withState(active, StateRevoked), now), 10, ErrRevoked, PublicStatus{Code: "c", State: "revoked", Remaining: 0}},
		{"unknown state", withState(active, "weird"), 0, ErrRevoked, PublicStatus{Code: "c", State: "revoked", Remaining: 0}},
	}
	for _, tt := range tests {
		if got := tt.inv.Open(now, tt.used); !errors.Is(got, tt.want) || (tt.want == nil) != (got == nil) {
			t.Errorf("%s: Open = %v, want %v", tt.name, got, tt.want)
		}
		tt.st.Campaign = tt.inv.Campaign
		if got := tt.inv.Status(now, tt.used); got != tt.st {
			t.Errorf("%s: Status = %+v, want %+v", tt.name, got, tt.st)
		}
	}
}

func TestValidCode(t *testing.T) {
	for code, want := range map[string]bool{
		"twitter-reg1": true, "a": true, "0": true, "a-b-c": true,
		"": false, "-a": false, "a-": false, "Twitter": false, "a_b": false, "a.b": false,
		"../etc": false, "$gt": false, "a#1": false, "a b": false, "ü": false,
		"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk":  true,
		"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl": false,
	} {
		if got := ValidCode(code); got != want {
			t.Errorf("ValidCode(%q) = %v, want %v", code, got, want)
		}
	}
}

func TestSettle(t *testing.T) {
	me := Email{Canonical: "me@example.com"}
	other := Email{Canonical: "other@example.com"}
	tests := []struct {
		name    string
		r       ClaimResult
		out     Outcome
		done    bool
		wantErr error
	}{
		{"inserted", ClaimResult{Status: ClaimInserted}, Redeemed, true, nil},
		{"slot taken by another", ClaimResult{Status: ClaimSlotTaken, Holder: Redemption{Code: "c", Email: other}}, 0, false, nil},
		{"slot taken by me earlier", ClaimResult{Status: ClaimSlotTaken, Holder: Redemption{Code: "c", Email: me}}, AlreadyRedeemed, true, nil},
		{"email on same code", ClaimResult{Status: ClaimEmailTaken, Holder: Redemption{Code: "c", Email: me}}, AlreadyRedeemed, true, nil},
		{"email on other code", ClaimResult{Status: ClaimEmailTaken, Holder: Redemption{Code: "d", Email: me}}, 0, true, ErrUsedElsewhere},
		{"vanished conflict", ClaimResult{Status: ClaimRetry}, 0, false, nil},
		{"failed", ClaimResult{Status: ClaimFailed, Err: ErrUnavailable}, 0, true, ErrUnavailable},
		{"failed without reason", ClaimResult{Status: ClaimFailed}, 0, true, ErrUnavailable},
	}
	for _, tt := range tests {
		out, done, err := Settle("c", me, tt.r)
		if out != tt.out || done != tt.done || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("%s: Settle = %v, %v, %v; want %v, %v, %v", tt.name, out, done, err, tt.out, tt.done, tt.wantErr)
		}
	}
}
