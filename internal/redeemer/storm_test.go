package redeemer_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/redeemer"
)

// TestFlashCrowdAcrossTwoReplicas is the storm: two redeemers share one
// database; 6,000 requests from 512 concurrent clients hit one code with 1,000
// slots. Among them are spelling variants of the same people and invalid
// emails. Exactly 1,000 redemptions may exist, one per person, and the people
// answered 201 must be exactly the people stored.
func TestFlashCrowdAcrossTwoReplicas(t *testing.T) {
	const slots, people, requests, clients = 1000, 4000, 6000, 512
	st := newStore(t, active("twitter-reg1", slots))
	replicas := []*replica{startReplica(t, st, redeemer.Config{}), startReplica(t, st, redeemer.Config{})}
	transport := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	emailFor := func(i int) (raw, canonical string) {
		p := i % people
		switch i % 10 {
		case 7:
			return fmt.Sprintf("not-an-email-%d", i), ""
		case 8:
			return fmt.Sprintf("  Player%d+flash@EXAMPLE.com ", p), fmt.Sprintf("player%d@example.com", p)
		default:
			return fmt.Sprintf("player%d@example.com", p), fmt.Sprintf("player%d@example.com", p)
		}
	}

	var wg sync.WaitGroup
	var lock sync.Mutex
	created := map[string]int{}
	landedUnanswered := map[string]bool{} // answered 503, then 200 on retry
	retried := 0                          // 503s answered to a retry
	statuses := map[int]int{}
	work := make(chan int)
	for range clients {
		wg.Go(func() {
			for i := range work {
				raw, canonical := emailFor(i)
				resp := redeem(t, client, replicas[i%2].URL, "twitter-reg1", raw)
				// A 503 is an unknown outcome (a claim that timed out may
				// have landed): the player retries, as the landing page
				// does, and then hears 200 if it did (docs/reliability.md).
				for retry := 0; resp.status == 503 && retry < 10; retry++ {
					time.Sleep(100 * time.Millisecond)
					lock.Lock()
					retried++
					lock.Unlock()
					resp = redeem(t, client, replicas[(i+retry+1)%2].URL, "twitter-reg1", raw)
					if resp.status == 200 {
						lock.Lock()
						landedUnanswered[canonical] = true
						lock.Unlock()
					}
				}
				lock.Lock()
				statuses[resp.status]++
				switch {
				case canonical == "" && resp.status != 400:
					t.Errorf("invalid email %q answered %d", raw, resp.status)
				case resp.status == 201:
					created[canonical]++
				case resp.status >= 500 && resp.status != 503:
					t.Errorf("request %d: %d %v", i, resp.status, resp.body)
				}
				lock.Unlock()
			}
		})
	}
	for i := range requests {
		work <- i
	}
	close(work)
	wg.Wait()
	t.Logf("statuses: %v (final answers; %d more 503s before a retry's answer)", statuses, retried)

	stored, err := st.Redemptions(context.Background(), "twitter-reg1")
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != slots {
		t.Errorf("stored %d redemptions, want exactly %d", len(stored), slots)
	}
	seen := map[string]bool{}
	for _, r := range stored {
		if seen[r.Email.Canonical] {
			t.Errorf("%s stored twice", r.Email.Canonical)
		}
		seen[r.Email.Canonical] = true
		if n := created[r.Email.Canonical]; n > 1 || n == 0 && !landedUnanswered[r.Email.Canonical] {
			t.Errorf("%s stored but answered 201 %d times (and no 503 then 200)", r.Email.Canonical, n)
		}
		if r.Slot < 0 || r.Slot >= slots {
			t.Errorf("slot %d out of range", r.Slot)
		}
	}
	for email := range created {
		if !seen[email] {
			t.Errorf("%s answered 201 but not stored", email)
		}
	}
	if statuses[503] > requests/10 {
		t.Errorf("%d requests shed with 503; the storm should mostly be served", statuses[503])
	}
}

// TestOneEmailRacingTwoCodes: the same person hits two codes on two replicas
// at once, fifty times over; each time exactly one redemption exists.
func TestOneEmailRacingTwoCodes(t *testing.T) {
	st := newStore(t, active("code-a", 1000), active("code-b", 1000))
	replicas := []*replica{startReplica(t, st, redeemer.Config{}), startReplica(t, st, redeemer.Config{})}
	for i := range 50 {
		email := fmt.Sprintf("racer%d@example.com", i)
		var wg sync.WaitGroup
		answers := make([]int, 2)
		for j, code := range []string{"code-a", "code-b"} {
			wg.Go(func() { answers[j] = redeem(t, replicas[j].Client(), replicas[j].URL, code, email).status })
		}
		wg.Wait()
		if !(answers[0] == 201 && answers[1] == 409 || answers[0] == 409 && answers[1] == 201) {
			t.Errorf("%s: answers %v, want one 201 and one 409", email, answers)
		}
	}
	a, _ := st.Used(context.Background(), "code-a")
	b, _ := st.Used(context.Background(), "code-b")
	if a+b != 50 {
		t.Errorf("stored %d+%d redemptions, want 50", a, b)
	}
}
