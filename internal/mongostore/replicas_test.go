package mongostore_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/mongostore"
)

func TestReplicasAreTheRecentlyAnnouncedOnesOfTheirCampaign(t *testing.T) {
	s, ctx := newStore(t), context.Background()
	now := time.Now()
	at := func(d time.Duration) { mongostore.SetNow(s, func() time.Time { return now.Add(d) }) }
	at(-time.Hour)
	if err := s.Announce(ctx, "dead", "c", "10.0.0.9:8081"); err != nil {
		t.Fatal(err)
	}
	at(-30 * time.Second)
	if err := s.Announce(ctx, "quiet", "c", "10.0.0.8:8081"); err != nil {
		t.Fatal(err)
	}
	at(-time.Second)
	for id, campaign := range map[string]string{"a": "c", "b": "c", "other": "d"} {
		if err := s.Announce(ctx, id, campaign, id+":8081"); err != nil {
			t.Fatal(err)
		}
	}
	at(0)
	if err := s.Announce(ctx, "a", "c", "a2:8081"); err != nil { // announced again, moved
		t.Fatal(err)
	}
	got, err := s.Replicas(ctx, "c", now.Add(-10*time.Second))
	want := map[string]string{"a": "a2:8081", "b": "b:8081"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("Replicas = %v, %v; want %v", got, err, want)
	}
	// The replica silent for an hour was forgotten; the one silent for
	// 30 s is only left out.
	got, err = s.Replicas(ctx, "c", now.Add(-2*time.Hour))
	want = map[string]string{"a": "a2:8081", "b": "b:8081", "quiet": "10.0.0.8:8081"}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("Replicas since two hours = %v, %v; want %v (dead forgotten)", got, err, want)
	}
	if err := s.Withdraw(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Replicas(ctx, "c", now.Add(-10*time.Second)); !maps.Equal(got, map[string]string{"a": "a2:8081"}) {
		t.Errorf("after b withdrew: %v", got)
	}
}
