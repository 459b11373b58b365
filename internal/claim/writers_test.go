package claim_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/claim"
	"github.com/velvetrope/velvetrope/internal/invite"
)

// inProcess hands claims straight to the writer's service, as the peer port
// does over the network (its wire is tested in internal/redeemer, the whole
// in test/e2e).
type inProcess struct {
	writer    *claim.Service
	forwarded atomic.Int64
}

func (w *inProcess) Forward(ctx context.Context, code string, email invite.Email, lang string) (invite.Outcome, error, bool) {
	w.forwarded.Add(1)
	out, err := w.writer.RedeemHere(ctx, code, email, lang)
	return out, err, true
}

func (w *inProcess) Occupants(_ context.Context, code string) ([]invite.Occupant, bool) {
	return w.writer.OccupantsHere(code)
}

// TestAReplicaThatHandsClaimsOverAnswersAFullCodeFromMemory: once the writer
// says the code is full, the other replica reads what the writer knows and
// answers the rest of the crowd itself, winners included.
func TestAReplicaThatHandsClaimsOverAnswersAFullCodeFromMemory(t *testing.T) {
	st := newStore(t, active("c", 50))
	writer := start(t, st, fast)
	hand := &inProcess{writer: writer}
	cfg := fast
	cfg.Writers = hand
	other := start(t, st, cfg)

	a := newAnswers()
	crowd(t, []*claim.Service{writer, other}, "c", "p", 200, a)
	audit(t, st, "c", a, nil, 50)
	if hand.forwarded.Load() == 0 {
		t.Fatal("the other replica handed no claim over")
	}
	eventually(t, func() error {
		if occ, known := other.OccupantsHere("c"); !known || len(occ) != 50 {
			return fmt.Errorf("the other replica knows %d holders for certain (%v)", len(occ), known)
		}
		return nil
	})
	before := hand.forwarded.Load()
	for i := range 20 {
		if _, err := other.Redeem(context.Background(), "c", email(t, fmt.Sprintf("late%d@example.com", i)), "en"); !errors.Is(err, invite.ErrExhausted) {
			t.Fatalf("a late player heard %v; want exhausted", err)
		}
	}
	for w := range a.acked {
		if out, err := other.Redeem(context.Background(), "c", email(t, w), "en"); out != invite.AlreadyRedeemed {
			t.Fatalf("winner %s heard %v, %v; want already redeemed", w, out, err)
		}
	}
	if n := hand.forwarded.Load() - before; n != 0 {
		t.Errorf("%d claims on the full code were handed over; want every one answered from memory", n)
	}
}

// TestAReloadToForgetARevocationReadsStorage: a replica that saw a
// revocation in the tallies reads the code from storage, not from the
// writer, which may not have seen it yet and would give the revoked holder
// back.
func TestAReloadToForgetARevocationReadsStorage(t *testing.T) {
	st := newStore(t, active("c", 5))
	slow := fast
	slow.UsageInterval = time.Hour // the writer never sees the revocation
	writer := start(t, st, slow)
	cfg := fast
	cfg.Writers = &inProcess{writer: writer}
	other := start(t, st, cfg)

	for i := range 5 {
		if out, err := other.Redeem(context.Background(), "c", email(t, fmt.Sprintf("p%d@example.com", i)), "en"); out != invite.Redeemed {
			t.Fatalf("p%d: %v, %v", i, out, err)
		}
	}
	if _, err := other.Redeem(context.Background(), "c", email(t, "late@example.com"), "en"); !errors.Is(err, invite.ErrExhausted) {
		t.Fatalf("late: %v; want exhausted", err)
	}
	eventually(t, func() error {
		if !other.KnowsHolder("c", "p0@example.com") {
			return errors.New("the other replica has not read the writer's holders")
		}
		return nil
	})
	if _, err := st.Revoke(context.Background(), "c", "p0@example.com"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if other.KnowsHolder("c", "p0@example.com") {
			return errors.New("the other replica still holds the revoked person")
		}
		return nil
	})
	if !writer.KnowsHolder("c", "p0@example.com") {
		t.Fatal("the writer forgot the revoked person: this test no longer tells where the other replica read")
	}
}

// heldTallies reads the tallies at once but, when armed, answers only when
// released: the read sees storage as it was, its answer arrives after what
// happened meanwhile.
type heldTallies struct {
	claim.Store
	calls   atomic.Int64
	reloads atomic.Int64
	armed   atomic.Bool
	reading chan struct{}
	release chan struct{}
}

func (h *heldTallies) Occupants(ctx context.Context, code string) ([]invite.Occupant, error) {
	h.reloads.Add(1)
	return h.Store.Occupants(ctx, code)
}

func (h *heldTallies) Tallies(ctx context.Context) (map[string]invite.Tally, error) {
	h.calls.Add(1)
	t, err := h.Store.Tallies(ctx)
	if h.armed.CompareAndSwap(true, false) {
		h.reading <- struct{}{}
		<-h.release
	}
	return t, err
}

// TestATallyReadDuringOwnWritesLeavesTheViewTrusted: a tally read that
// began before this replica's writes and answers after them shows fewer
// documents than the view now has. That is not a deletion, and the view
// keeps answering its holders from memory, so a crowd's second requests are
// not written again. (A deletion during writes is still seen at once:
// TestBusyCodeNeverAnswersARevokedHolderFromMemory.)
func TestATallyReadDuringOwnWritesLeavesTheViewTrusted(t *testing.T) {
	st := newStore(t, active("c", 50))
	held := &heldTallies{Store: st, reading: make(chan struct{}), release: make(chan struct{})}
	a := start(t, held, fast)
	expect(t, a, "c", "first@example.com", invite.Redeemed, nil) // the view is loaded
	// ...and judged equal to storage.
	eventually(t, func() error {
		if a.Suspect("c") || !a.KnowsHolder("c", "first@example.com") {
			return errors.New("the view is not settled yet")
		}
		return nil
	})
	held.armed.Store(true)
	<-held.reading // this read saw storage before the writes below
	for i := range 10 {
		expect(t, a, "c", fmt.Sprintf("p%d@example.com", i), invite.Redeemed, nil)
	}
	n, reloads := held.calls.Load(), held.reloads.Load()
	close(held.release)
	eventually(t, func() error { // the next read began: the held one was judged
		if held.calls.Load() <= n {
			return errors.New("no tally read since")
		}
		return nil
	})
	if a.Suspect("c") || held.reloads.Load() != reloads {
		t.Fatalf("the replica's own writes during a tally read made its view suspect (suspect %v, reloaded %d times)",
			a.Suspect("c"), held.reloads.Load()-reloads)
	}
	expect(t, a, "c", "p3@example.com", invite.AlreadyRedeemed, nil)
}
