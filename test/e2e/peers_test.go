package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/loadgen"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// fleet starts n replicas and waits until each sees all n as peers, so that
// every code has one writer they agree on.
func (e *env) fleet(n int) []*testbed.Process {
	e.t.Helper()
	var ps []*testbed.Process
	for range n {
		ps = append(ps, e.redeemer())
	}
	if err := testbed.WaitForPeers(ps, 20*time.Second); err != nil {
		e.t.Fatal(err)
	}
	return ps
}

// metric is the sum of p's samples whose name, labels included, starts
// with prefix.
func metric(p *testbed.Process, prefix string) float64 {
	var sum float64
	for _, v := range testbed.Scrape(p.MetricsAddr, prefix) {
		sum += v
	}
	return sum
}

// TestOneWriterPerCode: a crowd with double submits and second spellings
// reaches two replicas round robin. One of them writes the code; the other
// hands it every claim memory cannot answer. Storage then sees the crowd
// as one replica's: no slot collision and no person written twice, which
// on the test bed would each cost a batch redone row by row.
func TestOneWriterPerCode(t *testing.T) {
	e := newEnv(t, active("crowd", 400))
	ps := e.fleet(2)
	res := loadgen.Run(context.Background(), loadgen.Config{
		Targets: []string{"http://" + ps[0].Addr, "http://" + ps[1].Addr}, Codes: []string{"crowd"},
		Requests: 2000, Concurrency: 64, Email: loadgen.Mix{Duplicates: 0.1, Variants: 0.1, Invalid: 0.02, Seed: 11, Prefix: "w-"}.Email,
	})
	audit(t, e, []string{"crowd"}, res)
	if res.Statuses[201] != 400 {
		t.Errorf("%d redemptions answered, want the code's 400", res.Statuses[201])
	}
	forwarded := []float64{metric(ps[0], `velvetrope_peer_forwards_total{result="answered"}`), metric(ps[1], `velvetrope_peer_forwards_total{result="answered"}`)}
	if (forwarded[0] == 0) == (forwarded[1] == 0) {
		t.Errorf("claims handed over: %v; want exactly one replica, the one that does not write the code, to hand claims over", forwarded)
	}
	for _, p := range ps {
		if n := metric(p, `velvetrope_peer_forwards_total{result="unanswered"}`); n > 0 {
			t.Errorf("%s: %v claims handed over got no answer", p.Addr, n)
		}
		for _, r := range []string{"slot-taken", "email-taken"} {
			if n := metric(p, `velvetrope_store_claim_results_total{result="`+r+`"}`); n > 0 {
				t.Errorf("%s: %v claims met %s in storage; one writer per code should meet none", p.Addr, n, r)
			}
		}
	}
}
