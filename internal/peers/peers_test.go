package peers

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// fakeStore and fakeClient are pure stand-ins: storage is tested in
// internal/mongostore, the peer port in internal/redeemer and the whole in
// test/e2e.
type fakeStore struct{ replicas map[string]string }

func (f *fakeStore) Announce(_ context.Context, id, _, addr string) error {
	f.replicas[id] = addr
	return nil
}
func (f *fakeStore) Withdraw(_ context.Context, id string) error { delete(f.replicas, id); return nil }
func (f *fakeStore) Replicas(context.Context, string, time.Time) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range f.replicas {
		out[k] = v
	}
	return out, nil
}

type fakeClient struct {
	asked  []string // addresses, in order
	answer bool
}

func (f *fakeClient) Redeem(_ context.Context, addr, _ string, _ invite.Email, _ string) (invite.Outcome, error, bool) {
	f.asked = append(f.asked, addr)
	if !f.answer {
		return 0, nil, false
	}
	return invite.Redeemed, nil, true
}

func (f *fakeClient) Occupants(context.Context, string, string) ([]invite.Occupant, bool) {
	return nil, false
}

func newMembers(t *testing.T, id string, store *fakeStore, client Client) *Members {
	t.Helper()
	m, err := New(store, client, Config{ID: id, Addr: id + ":8081"}, prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestReplicasAgreeOnEachCodesWriter(t *testing.T) {
	store := &fakeStore{replicas: map[string]string{}}
	var fleet []*Members
	for _, id := range []string{"a", "b", "c"} {
		m := newMembers(t, id, store, &fakeClient{})
		m.refresh(context.Background(), true)
		fleet = append(fleet, m)
	}
	for _, m := range fleet {
		m.refresh(context.Background(), true) // the first ones now see the last
	}
	wins := map[string]int{}
	for i := range 3000 {
		code := fmt.Sprintf("code-%d", i)
		w := fleet[0].writer(code)
		for _, m := range fleet[1:] {
			if got := m.writer(code); got.id != w.id {
				t.Fatalf("%s: replica %s picks %s, replica a picks %s", code, m.cfg.ID, got.id, w.id)
			}
		}
		wins[w.id]++
	}
	for id, n := range wins {
		if n < 800 || n > 1200 {
			t.Errorf("replica %s writes %d of 3000 codes; want about a third: %v", id, n, wins)
		}
	}

	// A replica leaving moves only the codes it wrote.
	store.Withdraw(context.Background(), "c")
	fleet[0].refresh(context.Background(), true)
	moved := 0
	for i := range 3000 {
		code := fmt.Sprintf("code-%d", i)
		before := fleet[1].writer(code).id // b has not refreshed yet
		after := fleet[0].writer(code).id
		if before != after {
			if before != "c" {
				t.Fatalf("%s moved from %s to %s, though %s stayed", code, before, after, before)
			}
			moved++
		}
	}
	if moved != wins["c"] {
		t.Errorf("%d codes moved; want the %d that c wrote", moved, wins["c"])
	}
}

func TestForwardingHandsOverOnlyOtherWritersCodes(t *testing.T) {
	store := &fakeStore{replicas: map[string]string{}}
	client := &fakeClient{answer: true}
	a := newMembers(t, "a", store, client)
	if _, _, handled := a.Forward(context.Background(), "x", invite.Email{}, ""); handled {
		t.Fatal("a replica that knows no other replica handed a claim over")
	}
	newMembers(t, "b", store, &fakeClient{}).refresh(context.Background(), true)
	a.refresh(context.Background(), true)
	var mine, theirs string
	for i := 0; mine == "" || theirs == ""; i++ {
		code := fmt.Sprintf("code-%d", i)
		if a.writer(code).id == "a" {
			mine = code
		} else {
			theirs = code
		}
	}
	if _, _, handled := a.Forward(context.Background(), mine, invite.Email{}, ""); handled || len(client.asked) != 0 {
		t.Errorf("the writer handed its own code's claim over (asked %v)", client.asked)
	}
	out, err, handled := a.Forward(context.Background(), theirs, invite.Email{}, "")
	if !handled || err != nil || out != invite.Redeemed || len(client.asked) != 1 || client.asked[0] != "b:8081" {
		t.Errorf("Forward = %v, %v, %v; asked %v; want b's answer", out, err, handled, client.asked)
	}
}

func TestAWriterThatDoesNotAnswerIsLeftOutForAWhile(t *testing.T) {
	store := &fakeStore{replicas: map[string]string{}}
	client := &fakeClient{answer: false}
	a := newMembers(t, "a", store, client)
	now := time.Unix(1000, 0)
	a.cfg.Now = func() time.Time { return now }
	newMembers(t, "b", store, &fakeClient{}).refresh(context.Background(), true)
	a.refresh(context.Background(), true)
	var theirs string
	for i := 0; theirs == ""; i++ {
		if code := fmt.Sprintf("code-%d", i); a.writer(code).id == "b" {
			theirs = code
		}
	}
	if _, _, handled := a.Forward(context.Background(), theirs, invite.Email{}, ""); handled {
		t.Fatal("a claim nobody answered counted as handled: it would be answered with nothing")
	}
	if _, _, handled := a.Forward(context.Background(), theirs, invite.Email{}, ""); handled || len(client.asked) != 1 {
		t.Errorf("asked %v: a writer that just did not answer was asked again at once", client.asked)
	}
	now = now.Add(a.cfg.DownFor + time.Millisecond)
	a.Forward(context.Background(), theirs, invite.Email{}, "")
	if len(client.asked) != 2 {
		t.Errorf("asked %v: the writer was not asked again after DownFor", client.asked)
	}
}

func TestAWithdrawnReplicaStopsAnnouncingItself(t *testing.T) {
	store := &fakeStore{replicas: map[string]string{}}
	a := newMembers(t, "a", store, &fakeClient{})
	a.refresh(context.Background(), true)
	if _, ok := store.replicas["a"]; !ok {
		t.Fatal("a ready replica did not announce itself")
	}
	a.Withdraw(context.Background())
	a.refresh(context.Background(), true)
	if _, ok := store.replicas["a"]; ok {
		t.Error("a withdrawn replica announced itself again")
	}
	b := newMembers(t, "b", store, &fakeClient{})
	b.refresh(context.Background(), false)
	if _, ok := store.replicas["b"]; ok {
		t.Error("a replica that is not ready announced itself")
	}
}
