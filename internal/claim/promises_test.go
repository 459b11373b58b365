package claim_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/velvetrope/velvetrope/internal/claim"
	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// answers records what a crowd was told, per canonical email.
type answers struct {
	mu      sync.Mutex
	acked   map[string]bool // 201 or 200
	unknown map[string]bool // 503: may or may not be stored
	other   map[string]error
}

func newAnswers() *answers {
	return &answers{acked: map[string]bool{}, unknown: map[string]bool{}, other: map[string]error{}}
}

// crowd sends n people (prefix0..prefix<n-1>) at code, spread over the
// replicas, 64 at a time; it returns when every request has its answer.
func crowd(t *testing.T, replicas []*claim.Service, code, prefix string, n int, a *answers) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			e := email(t, fmt.Sprintf("%s%d@example.com", prefix, i))
			out, err := replicas[i%len(replicas)].Redeem(context.Background(), code, e, "en")
			a.mu.Lock()
			defer a.mu.Unlock()
			switch {
			case out == invite.Redeemed || out == invite.AlreadyRedeemed:
				a.acked[e.Canonical] = true
			case errors.Is(err, invite.ErrUnavailable):
				a.unknown[e.Canonical] = true
			case errors.Is(err, invite.ErrExhausted):
			default:
				a.other[e.Canonical] = err
			}
		})
	}
	wg.Wait()
}

// audit checks storage against what was answered: every acknowledgement is
// stored, everything stored was acknowledged or left unknown (503), and the
// code holds want people.
func audit(t *testing.T, st *mongostore.Store, code string, a *answers, before map[string]bool, want int) {
	t.Helper()
	rs, err := st.Redemptions(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, r := range rs {
		stored[r.Email.Canonical] = true
		if !a.acked[r.Email.Canonical] && !a.unknown[r.Email.Canonical] && !before[r.Email.Canonical] {
			t.Errorf("%s stored but never acknowledged", r.Email.Canonical)
		}
	}
	for e := range a.acked {
		if !stored[e] {
			t.Errorf("%s acknowledged but not stored", e)
		}
	}
	for e, err := range a.other {
		t.Errorf("%s: unexpected answer %v", e, err)
	}
	if len(rs) != want {
		t.Fatalf("%s holds %d people, want %d", code, len(rs), want)
	}
}

func holders(t *testing.T, st *mongostore.Store, code string) map[string]bool {
	t.Helper()
	rs, err := st.Redemptions(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range rs {
		out[r.Email.Canonical] = true
	}
	return out
}

// TestMaxUsesChangesAreExactDuringACrowd: staff lower maxUses from 1000 to
// 100 after 60 people redeemed (at slots far above 100), while a crowd runs
// through two replicas, one of which polls so slowly that it keeps trying
// the old limit. Then they raise it, then lower it below usage.
func TestMaxUsesChangesAreExactDuringACrowd(t *testing.T) {
	st := newStore(t, active("flash", 1000))
	ctx := context.Background()
	early := make([]invite.Redemption, 60)
	for i := range early {
		e := fmt.Sprintf("early%d@example.com", i)
		early[i] = invite.Redemption{Code: "flash", Slot: 900 + i, Email: invite.Email{Canonical: e, Raw: e}, Nonce: e, RedeemedAt: time.Now()}
	}
	st.Claim(ctx, early)
	slow := fast
	slow.PollInterval, slow.UsageInterval = time.Hour, time.Hour // sees invitations once, at start
	replicas := []*claim.Service{start(t, st, fast), start(t, st, slow)}

	// Lowered while the crowd runs.
	a := newAnswers()
	var lowered sync.WaitGroup
	var usedWhenApplied int
	lowered.Go(func() {
		time.Sleep(20 * time.Millisecond)
		if err := st.PutInvitation(ctx, active("flash", 100)); err != nil {
			t.Error(err)
		}
		usedWhenApplied, _ = st.Used(ctx, "flash")
	})
	crowd(t, replicas, "flash", "p", 3000, a)
	lowered.Wait()
	limit := max(100, usedWhenApplied)
	audit(t, st, "flash", a, holders(t, st, "flash"), len(holders(t, st, "flash")))
	if n, _ := st.Used(ctx, "flash"); n > limit {
		t.Fatalf("lowered to 100 with %d holders when the change was applied: %d stored", usedWhenApplied, n)
	}
	// Once applied, nobody more gets in while the code is at or above the
	// limit, through either replica.
	before := holders(t, st, "flash")
	a = newAnswers()
	crowd(t, replicas, "flash", "q", 1000, a)
	audit(t, st, "flash", a, before, len(before))
	if len(a.acked) != 0 {
		t.Fatalf("%d people got in after the code was full at %d", len(a.acked), len(before))
	}

	// Raised: exactly the new places open, once a replica has read the
	// new limit (within its poll interval).
	raised := min(1000, len(before)+200)
	if err := st.PutInvitation(ctx, active("flash", raised)); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if s, _ := replicas[0].Status("flash"); s.State != "active" {
			return fmt.Errorf("replica still sees %+v", s)
		}
		return nil
	})
	a = newAnswers()
	crowd(t, replicas, "flash", "r", 1500, a)
	audit(t, st, "flash", a, before, raised)

	// Lowered below usage: nothing is undone, nobody new gets in.
	before = holders(t, st, "flash")
	if err := st.PutInvitation(ctx, active("flash", 50)); err != nil {
		t.Fatal(err)
	}
	a = newAnswers()
	crowd(t, replicas, "flash", "s", 1000, a)
	audit(t, st, "flash", a, before, len(before))
}

// TestRevocationReachesEveryReplica: a revoked person is forgotten by every
// replica within the usage interval (also when someone else takes a place in
// the same interval, and when the document is deleted by hand), and may
// redeem again through either replica.
func TestRevocationReachesEveryReplica(t *testing.T) {
	db := mongoServer.Database(t)
	st := mongostore.New(db)
	ctx := context.Background()
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.PutInvitation(ctx, active("r", 10)); err != nil {
		t.Fatal(err)
	}
	a, b := start(t, st, fast), start(t, st, fast)
	ann := email(t, "ann@example.com")
	expect(t, a, "r", ann.Raw, invite.Redeemed, nil)
	expect(t, b, "r", ann.Raw, invite.AlreadyRedeemed, nil) // b learns ann from storage
	forgotten := func() error {
		if a.KnowsHolder("r", ann.Canonical) || b.KnowsHolder("r", ann.Canonical) {
			return errors.New("a replica still holds ann")
		}
		return nil
	}

	// Revoked through the store, and someone else redeems in the same
	// interval: the count is unchanged, the holders are not.
	if _, err := st.Revoke(ctx, "", ann.Canonical); err != nil {
		t.Fatal(err)
	}
	expect(t, b, "r", "bob@example.com", invite.Redeemed, nil)
	eventually(t, forgotten)
	expect(t, b, "r", ann.Raw, invite.Redeemed, nil)
	expect(t, a, "r", ann.Raw, invite.AlreadyRedeemed, nil)

	// Deleted by hand, as an operator of the database would.
	if _, err := db.Collection(mongostore.RedemptionsCollection).
		DeleteOne(ctx, bson.D{{Key: "email", Value: ann.Canonical}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, forgotten)
	expect(t, a, "r", ann.Raw, invite.Redeemed, nil)
	expect(t, b, "r", ann.Raw, invite.AlreadyRedeemed, nil)
	if n, _ := st.Used(ctx, "r"); n != 2 {
		t.Fatalf("stored %d, want ann and bob", n)
	}
}

// TestHolderRetryIsAlwaysSafe: a person who holds a slot hears 200 from a
// replica that never served them, whatever became of the code: full,
// paused, expired or lowered; a newcomer hears why they cannot get in.
func TestHolderRetryIsAlwaysSafe(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		change func(invite.Invitation) invite.Invitation
		other  error
	}{
		{"full", func(i invite.Invitation) invite.Invitation { return i }, invite.ErrExhausted},
		{"paused", func(i invite.Invitation) invite.Invitation { i.State = invite.StatePaused; return i }, invite.ErrPaused},
		{"expired", func(i invite.Invitation) invite.Invitation { i.ExpiresAt = time.Now().Add(-time.Second); return i }, invite.ErrExpired},
		{"lowered", func(i invite.Invitation) invite.Invitation { i.MaxUses = 1; return i }, invite.ErrExhausted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inv := active("h", 2)
			st := newStore(t, inv)
			a, b := start(t, st, fast), start(t, st, fast)
			expect(t, a, "h", "first@example.com", invite.Redeemed, nil)
			expect(t, a, "h", "second@example.com", invite.Redeemed, nil)
			if err := st.PutInvitation(ctx, tt.change(inv)); err != nil {
				t.Fatal(err)
			}
			want := tt.change(inv)
			eventually(t, func() error {
				for _, r := range []*claim.Service{a, b} {
					if s, _ := r.Status("h"); s.State != want.Status(time.Now(), 2).State {
						return fmt.Errorf("a replica still sees %+v", s)
					}
				}
				return nil
			})
			expect(t, b, "h", "first@example.com", invite.AlreadyRedeemed, nil)
			expect(t, b, "h", "Second@Example.com", invite.AlreadyRedeemed, nil)
			expect(t, b, "h", "third@example.com", 0, tt.other)
			expect(t, a, "h", "third@example.com", 0, tt.other)
		})
	}
}

// TestUnknownOutcomesAreRetriable: whatever MongoDB does to a write (a
// stepdown after it landed, a write concern not met in time, a timeout
// before it landed), the answer is ErrUnavailable (503) and the retry gives
// 200 or 201, and the person is stored exactly once.
func TestUnknownOutcomesAreRetriable(t *testing.T) {
	stepdown := mongo.CommandError{Code: 10107, Name: "NotWritablePrimary", Labels: []string{"RetryableWriteError"}}
	wce := mongo.BulkWriteException{WriteConcernError: &mongo.WriteConcernError{Code: 64, Name: "WriteConcernFailed"}}
	for _, tt := range []struct {
		name   string
		err    error
		land   bool
		reason string
		retry  invite.Outcome
	}{
		{"stepdown after the write landed", stepdown, true, "not-primary", invite.AlreadyRedeemed},
		{"stepdown before it landed", stepdown, false, "not-primary", invite.Redeemed},
		{"write concern failed", wce, true, "write-concern", invite.AlreadyRedeemed},
		{"timeout", context.DeadlineExceeded, false, "timeout", invite.Redeemed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := newStore(t, active("u", 3))
			faults := &testbed.Faults{Store: st}
			svc := start(t, faults, fast)
			faults.FailNextClaim(mongostore.Classify("claiming slots", tt.err), tt.land)
			_, err := svc.Redeem(context.Background(), "u", email(t, "ann@example.com"), "en")
			if !errors.Is(err, invite.ErrUnavailable) || invite.UnavailableReason(err) != tt.reason {
				t.Fatalf("first answer %v (reason %q), want unavailable (%s)", err, invite.UnavailableReason(err), tt.reason)
			}
			// Until a poll succeeds, writes are refused at once; then the
			// retry is answered.
			eventually(t, func() error {
				out, err := svc.Redeem(context.Background(), "u", email(t, "ann@example.com"), "en")
				if err == nil && out != tt.retry {
					t.Fatalf("retry: %v, want %v", out, tt.retry)
				}
				return err
			})
			if n, _ := st.Used(context.Background(), "u"); n != 1 {
				t.Fatalf("stored %d times", n)
			}
		})
	}
}

// TestOutageKeepsAnsweringFromMemory: after the view loaded, MongoDB goes
// away. The replica stays ready, answers what memory knows and gives writes
// ErrUnavailable at once; once MongoDB is back, writes work again.
func TestOutageKeepsAnsweringFromMemory(t *testing.T) {
	full, open := active("full", 1), active("open", 5)
	st := newStore(t, full, open)
	faults := &testbed.Faults{Store: st}
	svc := start(t, faults, fast)
	expect(t, svc, "full", "ann@example.com", invite.Redeemed, nil)
	expect(t, svc, "full", "bob@example.com", 0, invite.ErrExhausted)

	faults.Down(mongostore.Classify("listing invitations", mongo.CommandError{Labels: []string{"NetworkError"}}))
	time.Sleep(3 * fast.PollInterval) // several polls fail
	if err := svc.Ready(); err != nil {
		t.Fatalf("not ready during an outage: %v", err)
	}
	expect(t, svc, "full", "ann@example.com", invite.AlreadyRedeemed, nil)
	expect(t, svc, "full", "carol@example.com", 0, invite.ErrExhausted)
	expect(t, svc, "nope", "carol@example.com", 0, invite.ErrUnknownCode)
	expect(t, svc, "open", "carol@example.com", 0, invite.ErrUnavailable)

	faults.Down(nil)
	eventually(t, func() error {
		_, err := svc.Redeem(context.Background(), "open", email(t, "carol@example.com"), "en")
		return err
	})
}

// TestAbandonedRequestsLeave: requests whose clients left while storage hung
// leave the queue and give their admission place back, so they are never
// written and the bound holds for the people still waiting.
func TestAbandonedRequestsLeave(t *testing.T) {
	st := newStore(t, active("a", 1000))
	faults := &testbed.Faults{Store: st}
	cfg := fast
	cfg.MaxPending, cfg.BatchSize, cfg.Parallel = 50, 10, 1
	svc := start(t, faults, cfg)
	expect(t, svc, "a", "warm@example.com", invite.Redeemed, nil) // load the view
	faults.Hold()

	for round := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() { svc.Redeem(ctx, "a", email(t, fmt.Sprintf("gone%d-%d@example.com", round, i)), "en") })
		}
		eventually(t, func() error { // all 50 wait: in the batch in flight, queued, or for a place
			if q := svc.Queued("a"); q+cfg.BatchSize < cfg.MaxPending && round > 0 {
				return fmt.Errorf("%d queued", q)
			}
			return nil
		})
		cancel() // the clients leave
		wg.Wait()
		if q, p := svc.Queued("a"), svc.Pending(); q != 0 || p > cfg.BatchSize {
			t.Fatalf("round %d: %d still queued and %d places taken after their clients left; only the batch in flight (%d) may keep its places", round, q, p, cfg.BatchSize)
		}
	}
	faults.Release()
	expect(t, svc, "a", "live@example.com", invite.Redeemed, nil)
	if got := faults.Claimed(); got > 1+cfg.BatchSize+1 {
		// warm, the one batch in flight when clients left, live.
		t.Fatalf("%d claims written for 1,000 abandoned requests", got)
	}
	eventually(t, func() error {
		if p := svc.Pending(); p != 0 {
			return fmt.Errorf("%d admission places still taken", p)
		}
		return nil
	})
}

// TestStorageFailuresAreCounted: an outage shows in metrics, by reason.
func TestStorageFailuresAreCounted(t *testing.T) {
	st := newStore(t, active("m", 5))
	faults := &testbed.Faults{Store: st}
	reg := prometheus.NewRegistry()
	instrumented, err := claim.Instrument(faults, reg)
	if err != nil {
		t.Fatal(err)
	}
	svc := start(t, instrumented, fast)
	faults.FailNextClaim(mongostore.Classify("claiming slots", mongo.CommandError{Code: 189, Name: "PrimarySteppedDown"}), false)
	expect(t, svc, "m", "ann@example.com", 0, invite.ErrUnavailable)
	failures, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range failures {
		if mf.GetName() != "velvetrope_store_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] == "claim" && labels["reason"] == "not-primary" && m.GetCounter().GetValue() == 1 {
				return
			}
		}
	}
	t.Fatal("velvetrope_store_failures_total{op=claim,reason=not-primary} is not 1")
}

// TestIdlePollReadsOneDocument: an idle replica reads the invitations only
// when one was written (or FullPoll passed); otherwise each poll reads the
// version document alone, whatever the number of codes.
func TestIdlePollReadsOneDocument(t *testing.T) {
	invs := make([]invite.Invitation, 300)
	for i := range invs {
		invs[i] = active(fmt.Sprintf("code-%d", i), 10)
	}
	st := newStore(t, invs...)
	reg := prometheus.NewRegistry()
	instrumented, err := claim.Instrument(st, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fast
	cfg.FullPoll = time.Hour
	svc := start(t, instrumented, cfg)
	count := func(op string) float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "velvetrope_store_operation_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "op" && l.GetValue() == op {
						return float64(m.GetHistogram().GetSampleCount())
					}
				}
			}
		}
		return 0
	}
	eventually(t, func() error {
		if n := count("invitations_version"); n < 10 {
			return fmt.Errorf("%v version polls so far", n)
		}
		return nil
	})
	if n := count("invitations"); n != 1 {
		t.Fatalf("%v full reads of the invitations while idle, want 1", n)
	}
	// A write is seen at the next poll.
	paused := active("code-7", 10)
	paused.State = invite.StatePaused
	if err := st.PutInvitation(context.Background(), paused); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if s, _ := svc.Status("code-7"); s.State != "paused" {
			return fmt.Errorf("still %+v", s)
		}
		return nil
	})
	if n := count("invitations"); n != 2 {
		t.Fatalf("%v full reads after one write, want 2", n)
	}
}

// TestFleetServesItsCampaign: a replica of one campaign's fleet keeps only
// that campaign's codes.
func TestFleetServesItsCampaign(t *testing.T) {
	mine, theirs := active("mine", 5), active("theirs", 5)
	mine.Campaign, theirs.Campaign = "twitter", "telegram"
	cfg := fast
	cfg.Campaign = "twitter"
	svc := start(t, newStore(t, mine, theirs), cfg)
	expect(t, svc, "mine", "p@example.com", invite.Redeemed, nil)
	expect(t, svc, "theirs", "p2@example.com", 0, invite.ErrUnknownCode)
}

// TestBusyCodeNeverAnswersARevokedHolderFromMemory: a revocation seen by the
// tally poll while a code is busy defers the reload to the end of the crowd,
// and meanwhile the view answers no holder from memory.
func TestBusyCodeNeverAnswersARevokedHolderFromMemory(t *testing.T) {
	st := newStore(t, active("busy", 10))
	faults := &testbed.Faults{Store: st}
	a := start(t, faults, fast)
	ctx := context.Background()
	ann := email(t, "ann@example.com")
	expect(t, a, "busy", ann.Raw, invite.Redeemed, nil)

	faults.Hold() // the next write hangs: the code stays busy
	bob := make(chan error, 1)
	go func() {
		_, err := a.Redeem(ctx, "busy", email(t, "bob@example.com"), "en")
		bob <- err
	}()
	eventually(t, func() error {
		if a.Pending() == 0 {
			return errors.New("bob's claim is not in flight yet")
		}
		return nil
	})
	if _, err := st.Revoke(ctx, "busy", ann.Canonical); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * fast.UsageInterval) // tally polls see the revocation
	if !a.KnowsHolder("busy", ann.Canonical) {
		t.Fatal("the view was reloaded while the code was busy; this test needs it deferred")
	}
	annAgain := make(chan invite.Outcome, 1)
	go func() {
		out, _ := a.Redeem(ctx, "busy", ann, "en")
		annAgain <- out
	}()
	select {
	case out := <-annAgain:
		t.Fatalf("revoked ann answered %v from a suspect view", out)
	case <-time.After(300 * time.Millisecond): // waiting for storage, as she should
	}
	faults.Release()
	if out := <-annAgain; out != invite.Redeemed {
		t.Fatalf("revoked ann's retry: %v, want a new place", out)
	}
	if err := <-bob; err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { // idle again: the deferred reload ran
		if !a.KnowsHolder("busy", ann.Canonical) {
			return errors.New("ann's new place is not in the view")
		}
		return nil
	})
}
