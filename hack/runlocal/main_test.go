package main

import (
	"testing"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// The samples are seeded through the operator's own mapping, owned as the
// operator owns them in namespace default.
func TestLoadSamples(t *testing.T) {
	invs, err := loadSamples("../../config/samples")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]invite.Invitation{
		"twitter-reg1":    {Code: "twitter-reg1", MaxUses: 1000, State: invite.StateActive, Campaign: "twitter", Owner: "default/twitter-reg1"},
		"telegram-test":   {Code: "telegram-test", MaxUses: 500, State: invite.StateActive, Campaign: "telegram", Owner: "default/telegram-test"},
		"instagram-hello": {Code: "instagram-hello", MaxUses: 100, State: invite.StateActive, Campaign: "instagram", Owner: "default/instagram-hello"},
	}
	if len(invs) != len(want) {
		t.Fatalf("%d samples, want %d: %+v", len(invs), len(want), invs)
	}
	for _, inv := range invs {
		w := want[inv.Code]
		if inv.Code != w.Code || inv.MaxUses != w.MaxUses || inv.State != w.State || inv.Campaign != w.Campaign || inv.Owner != w.Owner {
			t.Errorf("%s: %+v, want %+v", inv.Code, inv, w)
		}
	}
}
