package loadgen

import (
	"context"
	"strings"
	"testing"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// fixed is storage contents given as data: the audit's input, not a stand-in
// for a server (the audit itself is pure).
type fixed map[string][]string // code -> canonical emails stored

func (f fixed) Invitations(context.Context) ([]invite.Invitation, error) {
	return []invite.Invitation{{Code: "c", MaxUses: 2}, {Code: "d", MaxUses: 2}}, nil
}

func (f fixed) Redemptions(_ context.Context, code string) ([]invite.Redemption, error) {
	var out []invite.Redemption
	for i, e := range f[code] {
		out = append(out, invite.Redemption{Code: code, Slot: i, Email: invite.Email{Canonical: e}})
	}
	return out, nil
}

func outcomes(oo ...Outcome) Result {
	r := Result{Outcomes: oo}
	r.finish()
	return r
}

func o(code, email string, status int) Outcome {
	return Outcome{Code: code, Email: email, Status: status}
}

func TestAudit(t *testing.T) {
	tests := []struct {
		name   string
		stored fixed
		result Result
		want   []string // substrings of the expected violations, in order
	}{
		{"clean", fixed{"c": {"a@x.io", "b@x.io"}}, outcomes(o("c", "A@x.io", 201), o("c", "b+t@x.io", 201), o("c", "a@x.io", 200), o("c", "z@x.io", 410), o("c", "bad", 400)), nil},
		{"oversold", fixed{"c": {"a@x.io", "b@x.io", "e@x.io"}}, outcomes(o("c", "a@x.io", 201), o("c", "b@x.io", 201), o("c", "e@x.io", 201)), []string{"c: 3 redemptions stored for 2 slots"}},
		{"lost", fixed{"c": {"a@x.io"}}, outcomes(o("c", "a@x.io", 201), o("c", "b@x.io", 201)), []string{"b@x.io acknowledged for c but not stored"}},
		{"200 not stored", fixed{"c": {"a@x.io"}}, outcomes(o("c", "a@x.io", 201), o("c", "b@x.io", 200)), []string{"b@x.io acknowledged for c but not stored"}},
		{"stored, never acknowledged", fixed{"c": {"a@x.io", "b@x.io"}}, outcomes(o("c", "a@x.io", 201), o("c", "b@x.io", 410)), []string{"b@x.io stored for c but never acknowledged"}},
		{"stored after a lost answer", fixed{"c": {"a@x.io", "b@x.io"}}, outcomes(o("c", "a@x.io", 201), o("c", "b@x.io", 0)), nil},
		{"one person on two codes", fixed{"c": {"a@x.io"}, "d": {"a@x.io"}}, outcomes(o("c", "a@x.io", 201), o("d", "a@x.io", 200)), []string{"a@x.io stored twice"}},
		{"201 twice", fixed{"c": {"a@x.io"}}, outcomes(o("c", "a@x.io", 201), o("c", "A+x@x.io", 201)), []string{"201 2 times for a@x.io"}},
		{"201 for garbage", fixed{}, outcomes(o("c", "garbage", 201)), []string{"201 for an invalid email"}},
		{"stored before the run", fixed{"c": {"old@x.io", "a@x.io"}}, outcomes(o("c", "a@x.io", 201)), nil},
	}
	for _, tt := range tests {
		got, err := Audit(context.Background(), tt.stored, []string{"c", "d"}, tt.result, invite.DefaultFolding, map[string]bool{"old@x.io": true})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: violations %q, want %q", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tt.want[i]) {
				t.Errorf("%s: violation %q, want %q", tt.name, got[i], tt.want[i])
			}
		}
	}
}
