package claim_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/claim"
	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

// fast polls so tests see changes quickly.
var fast = claim.Config{PollInterval: 50 * time.Millisecond, UsageInterval: 100 * time.Millisecond}

func newStore(t *testing.T, invs ...invite.Invitation) *mongostore.Store {
	return mongoServer.Store(t, invs...)
}

func start(t *testing.T, st claim.Store, cfg claim.Config) *claim.Service {
	t.Helper()
	svc := claim.New(st, cfg, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; svc.Wait() })
	eventually(t, func() error { return svc.Ready() })
	return svc
}

func eventually(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition still false after 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func email(t *testing.T, s string) invite.Email {
	t.Helper()
	e, err := invite.ParseEmail(s, invite.DefaultFolding)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func active(code string, maxUses int) invite.Invitation {
	return invite.Invitation{Code: code, MaxUses: maxUses, State: invite.StateActive, Campaign: "test"}
}

func expect(t *testing.T, svc *claim.Service, code, addr string, wantOut invite.Outcome, wantErr error) {
	t.Helper()
	out, err := svc.Redeem(context.Background(), code, email(t, addr), "en")
	if out != wantOut || !errors.Is(err, wantErr) || (wantErr == nil) != (err == nil) {
		t.Fatalf("Redeem(%s, %s) = %v, %v; want %v, %v", code, addr, out, err, wantOut, wantErr)
	}
}

func TestRedeemOutcomes(t *testing.T) {
	expired := active("old", 5)
	expired.ExpiresAt = time.Now().Add(-time.Minute)
	paused, revoked := active("hold", 5), active("gone", 5)
	paused.State, revoked.State = invite.StatePaused, invite.StateRevoked
	svc := start(t, newStore(t, active("a", 2), active("b", 5), expired, paused, revoked), fast)

	expect(t, svc, "a", "Ann@Example.com", invite.Redeemed, nil)
	expect(t, svc, "a", "ann+again@example.com", invite.AlreadyRedeemed, nil)
	expect(t, svc, "b", "ann@example.com", 0, invite.ErrUsedElsewhere)
	expect(t, svc, "a", "bob@example.com", invite.Redeemed, nil)
	expect(t, svc, "a", "carol@example.com", 0, invite.ErrExhausted)
	expect(t, svc, "a", "bob@example.com", invite.AlreadyRedeemed, nil) // a holder retrying a full code
	expect(t, svc, "nope", "dan@example.com", 0, invite.ErrUnknownCode)
	expect(t, svc, "old", "dan@example.com", 0, invite.ErrExpired)
	expect(t, svc, "hold", "dan@example.com", 0, invite.ErrPaused)
	expect(t, svc, "gone", "dan@example.com", 0, invite.ErrRevoked)

	if st, err := svc.Status("a"); err != nil || st != (invite.PublicStatus{Code: "a", Campaign: "test", State: "exhausted", Remaining: 0}) {
		t.Errorf("Status(a) = %+v, %v", st, err)
	}
	if st, err := svc.Status("b"); err != nil || st != (invite.PublicStatus{Code: "b", Campaign: "test", State: "active", Remaining: 5}) {
		t.Errorf("Status(b) = %+v, %v", st, err)
	}
}

func TestChangesReachTheView(t *testing.T) {
	st := newStore(t, active("a", 1))
	svc := start(t, st, fast)
	ctx := context.Background()
	expect(t, svc, "a", "ann@example.com", invite.Redeemed, nil)
	expect(t, svc, "a", "bob@example.com", 0, invite.ErrExhausted)

	// Raising maxUses reopens the code.
	if err := st.PutInvitation(ctx, active("a", 2)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { _, err := svc.Redeem(ctx, "a", email(t, "bob@example.com"), "en"); return err })

	// Deleting a redemption frees its slot, seen at the next usage poll.
	expect(t, svc, "a", "carol@example.com", 0, invite.ErrExhausted)
	if _, err := st.Revoke(ctx, "", "ann@example.com"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { _, err := svc.Redeem(ctx, "a", email(t, "carol@example.com"), "en"); return err })

	// A new invitation and a pause arrive through polling.
	if err := st.PutInvitation(ctx, active("new", 3)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { _, err := svc.Status("new"); return err })
	paused := active("new", 3)
	paused.State = invite.StatePaused
	if err := st.PutInvitation(ctx, paused); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if st, _ := svc.Status("new"); st.State != "paused" {
			return fmt.Errorf("state %q, want paused", st.State)
		}
		return nil
	})
	expect(t, svc, "new", "dan@example.com", 0, invite.ErrPaused)
}

func TestTwoReplicasNeverOversell(t *testing.T) {
	// Two services (as two replicas) share one database; 2,500 people, some
	// of them twice, race for 1,000 slots.
	st := newStore(t, active("storm", 1000))
	replicas := []*claim.Service{start(t, st, fast), start(t, st, fast)}
	var redeemed, again, full atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := range 3000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := replicas[i%2].Redeem(context.Background(), "storm", email(t, fmt.Sprintf("p%d@example.com", i%2500)), "ru")
			switch {
			case out == invite.Redeemed:
				redeemed.Add(1)
			case out == invite.AlreadyRedeemed:
				again.Add(1)
			case errors.Is(err, invite.ErrExhausted):
				full.Add(1)
			default:
				t.Errorf("request %d: %v, %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	rs, err := st.Redemptions(context.Background(), "storm")
	if err != nil {
		t.Fatal(err)
	}
	if redeemed.Load() != 1000 || len(rs) != 1000 {
		t.Fatalf("redeemed %d, stored %d, want 1000 each (again %d, full %d)", redeemed.Load(), len(rs), again.Load(), full.Load())
	}
}

func TestUnreachableStorageAnswersUnavailable(t *testing.T) {
	st := newStore(t, active("a", 5))
	svc := start(t, st, fast)
	ctx := context.Background()
	expect(t, svc, "a", "ann@example.com", invite.Redeemed, nil)

	// A second service whose database is unreachable after it loaded: a
	// client pointed at a dead port for its writes.
	client, err := mongostore.Connect("mongodb://127.0.0.1:1", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(ctx)
	dead := mongostore.New(client.Database("x"))
	broken := claim.New(dead, fast, logr.Discard())
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go broken.Run(rctx)
	if _, err := broken.Redeem(ctx, "a", email(t, "bob@example.com"), "en"); !errors.Is(err, invite.ErrUnavailable) {
		t.Fatalf("never-loaded service: %v, want ErrUnavailable", err)
	}
	eventually(t, func() error {
		if err := broken.Ready(); err == nil {
			return errors.New("ready with unreachable storage")
		}
		return nil
	})
}

func TestShedsLoadPastTheAdmissionBound(t *testing.T) {
	cfg := fast
	cfg.MaxPending, cfg.AdmissionWait, cfg.BatchSize = 1, time.Nanosecond, 1
	svc := start(t, newStore(t, active("a", 1000)), cfg)
	var busy, ok atomic.Int64
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			_, err := svc.Redeem(context.Background(), "a", email(t, fmt.Sprintf("p%d@example.com", i)), "en")
			switch {
			case errors.Is(err, invite.ErrBusy):
				busy.Add(1)
			case err == nil:
				ok.Add(1)
			default:
				t.Errorf("unexpected %v", err)
			}
		})
	}
	wg.Wait()
	if busy.Load() == 0 || ok.Load() == 0 {
		t.Fatalf("busy %d, ok %d: want both", busy.Load(), ok.Load())
	}
}

func TestHolderHearsOKWhenAnotherReplicaFilledTheCode(t *testing.T) {
	// A knows only its own holder; B fills the code. Once A's usage poll
	// says "full", a holder from B retrying on A must hear 200, not 410.
	st := newStore(t, active("a", 2))
	a, b := start(t, st, fast), start(t, st, fast)
	expect(t, a, "a", "first@example.com", invite.Redeemed, nil)
	expect(t, b, "a", "second@example.com", invite.Redeemed, nil)
	eventually(t, func() error {
		if s, _ := a.Status("a"); s.State != "exhausted" {
			return fmt.Errorf("replica A still sees %+v", s)
		}
		return nil
	})
	expect(t, a, "a", "second@example.com", invite.AlreadyRedeemed, nil)
	expect(t, a, "a", "third@example.com", 0, invite.ErrExhausted)
}

func TestInvalidInvitationDocumentsAreIgnored(t *testing.T) {
	st := newStore(t, active("good", 1), invite.Invitation{Code: "bad", MaxUses: -5, State: invite.StateActive})
	svc := start(t, st, fast)
	expect(t, svc, "bad", "p@example.com", 0, invite.ErrUnknownCode)
	expect(t, svc, "good", "p@example.com", invite.Redeemed, nil)
}

func TestStopRefusesNewRedemptions(t *testing.T) {
	svc := start(t, newStore(t, active("a", 5)), fast)
	expect(t, svc, "a", "p@example.com", invite.Redeemed, nil)
	svc.Stop()
	expect(t, svc, "a", "q@example.com", 0, invite.ErrUnavailable)
}

func TestReplicasFillTheirOwnBlocks(t *testing.T) {
	// Two replicas, 600 claims on 1,000 slots, every tenth the previous
	// person under another spelling at the other replica. Blocks to lease
	// remain throughout, so the replicas never meet in a slot; the twins
	// hear 200 from the hints.
	reg := prometheus.NewRegistry()
	st, err := claim.Instrument(newStore(t, active("blocks", 1000)), reg)
	if err != nil {
		t.Fatal(err)
	}
	replicas := []*claim.Service{start(t, st, fast), start(t, st, fast)}
	var wg sync.WaitGroup
	var redeemed, again atomic.Int64
	sem := make(chan struct{}, 64)
	for i := range 600 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			addr := fmt.Sprintf("p%d@example.com", i)
			if i%10 == 9 {
				addr = fmt.Sprintf("P%d+twin@example.com", i-1)
			}
			out, err := replicas[i%2].Redeem(context.Background(), "blocks", email(t, addr), "en")
			switch {
			case out == invite.Redeemed:
				redeemed.Add(1)
			case out == invite.AlreadyRedeemed:
				again.Add(1)
			default:
				t.Errorf("%s: %v, %v", addr, out, err)
			}
		})
	}
	wg.Wait()
	if redeemed.Load() != 540 || again.Load() != 60 {
		t.Errorf("redeemed %d, again %d; want 540 and 60", redeemed.Load(), again.Load())
	}
	if n := claimResults(t, reg, "slot-taken"); n != 0 {
		t.Errorf("%v slot collisions between replicas with free blocks left; want none", n)
	}
}

// claimResults reads velvetrope_store_claim_results_total{result} from reg.
func claimResults(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "velvetrope_store_claim_results_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
