package loadgen

import (
	"context"
	"strings"
	"testing"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// stored is a fixed list of redemptions: the audit's input, not a stand-in
// for a server (the audit itself is pure).
type stored []invite.Redemption

func (s stored) Redemptions(context.Context, string) ([]invite.Redemption, error) { return s, nil }

func held(emails ...string) stored {
	var s stored
	for i, e := range emails {
		s = append(s, invite.Redemption{Code: "c", Slot: i, Email: invite.Email{Canonical: e}})
	}
	return s
}

func TestAudit(t *testing.T) {
	ok := map[int]int{201: 2}
	tests := []struct {
		name   string
		stored stored
		result Result
		want   []string // substrings of the expected violations, in order
	}{
		{"clean", held("a@x.io", "b@x.io"), Result{Answered: []string{"A@x.io", "b+t@x.io"}, Statuses: ok}, nil},
		{"oversold", held("a@x.io", "b@x.io", "c@x.io"), Result{Answered: []string{"a@x.io", "b@x.io", "c@x.io"}, Statuses: ok}, []string{"3 redemptions stored for 2 slots"}},
		{"lost", held("a@x.io"), Result{Answered: []string{"a@x.io", "b@x.io"}, Statuses: ok}, []string{"b@x.io answered 201 but not stored"}},
		{"unanswered", held("a@x.io", "b@x.io"), Result{Answered: []string{"a@x.io"}, Statuses: ok}, []string{"b@x.io stored but never answered"}},
		{"unanswered but a request got no answer", held("a@x.io", "b@x.io"), Result{Answered: []string{"a@x.io"}, Statuses: map[int]int{201: 1, 0: 1}}, nil},
		{"same person twice", held("a@x.io", "a@x.io"), Result{Answered: []string{"a@x.io", "A+b@x.io"}, Statuses: ok}, []string{"201 twice for a@x.io", "a@x.io stored twice"}},
	}
	for _, tt := range tests {
		got, err := Audit(context.Background(), tt.stored, "c", 2, tt.result, invite.DefaultFolding)
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
