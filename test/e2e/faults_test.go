package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/loadgen"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

var mix = loadgen.Mix{Duplicates: 0.05, Variants: 0.05, Invalid: 0.02, Seed: 7, Prefix: "e2e-"}

func audit(t *testing.T, e *env, codes []string, res loadgen.Result) {
	t.Helper()
	violations, err := loadgen.Audit(context.Background(), e.store, codes, res, invite.DefaultFolding, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		t.Errorf("audit: %s", v)
	}
	t.Logf("%s", res.Summary())
}

// TestRedeemerKilledMidStorm: two replicas share a storm; the one that
// writes the code (the other hands it its claims) is killed with SIGKILL
// once 200 slots are taken. Claims handed to it get no answer, and the
// survivor writes them itself; clients that got no answer retry on the
// survivor. The audit must be clean: nobody acknowledged is lost, no slot
// is given twice, and a retry of a request that had landed hears 200, not a
// second slot.
func TestRedeemerKilledMidStorm(t *testing.T) {
	e := newEnv(t, active("storm", 1000))
	ps := e.fleet(2)
	var dead atomic.Int32 // 1 + the index of the killed replica; 0 while both live
	route := func(i int) string {
		if d := int(dead.Load()) - 1; d >= 0 {
			return "http://" + ps[1-d].Addr
		}
		return "http://" + ps[i%2].Addr
	}
	handed := make(chan float64, 1)
	go func() {
		e.waitUsed("storm", 200)
		// The writer is the replica that hands nothing over.
		w := 0
		if metric(ps[0], `velvetrope_peer_forwards_total{result="answered"}`) > 0 {
			w = 1
		}
		handed <- metric(ps[1-w], `velvetrope_peer_forwards_total{result="answered"}`)
		ps[w].Cmd.Process.Signal(syscall.SIGKILL)
		dead.Store(int32(w + 1))
	}()
	res := loadgen.Run(context.Background(), loadgen.Config{
		Route: route, Codes: []string{"storm"}, Requests: 3000, Concurrency: 64, Email: mix.Email, Retries: 5,
	})
	if dead.Load() == 0 {
		t.Fatal("the writer was never killed")
	}
	if n := <-handed; n == 0 {
		t.Error("the survivor handed no claim to the writer before it was killed")
	}
	if res.Statuses[0] != 0 {
		t.Errorf("%d requests never got an answer despite retries", res.Statuses[0])
	}
	audit(t, e, []string{"storm"}, res)
	if used, _ := e.store.Used(context.Background(), "storm"); used != 1000 {
		t.Errorf("%d redemptions stored, want the code exhausted at 1000", used)
	}
	survivor := ps[1-(int(dead.Load())-1)]
	t.Logf("the survivor's claims that the dead writer did not answer: %v", metric(survivor, `velvetrope_peer_forwards_total{result="unanswered"}`))
}

// TestMongoDBOutageMidStorm stops the database for a few seconds during a
// storm: writes fail fast with 503 and Retry-After, the replica stays ready
// (in its Service) and answers what memory knows, and service resumes by
// itself when the database is back.
func TestMongoDBOutageMidStorm(t *testing.T) {
	e := newEnv(t, active("outage", 1000))
	e.mongo.RequireOwnServer(t)
	r := e.redeemer()
	base := "http://" + r.Addr
	crowd := make(chan loadgen.Result, 1)
	go func() {
		crowd <- loadgen.Run(context.Background(), loadgen.Config{
			Targets: []string{base}, Codes: []string{"outage"}, Requests: 1500, Concurrency: 16,
			Email: mix.Email, Retries: 40, MaxBackoff: 500 * time.Millisecond,
		})
	}()
	e.waitUsed("outage", 200)
	if err := e.mongo.Kill(); err != nil {
		t.Fatal(err)
	}
	// Once the replica has noticed (a failed write or poll), a redemption
	// is refused at once with 503 + Retry-After.
	probe := func() (*http.Response, time.Duration) {
		start := time.Now()
		resp, err := http.Post(base+"/invitations/outage", "application/json", strings.NewReader(`{"email":"probe@example.com"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp, time.Since(start)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		resp, took := probe()
		if resp.StatusCode == http.StatusServiceUnavailable && took < time.Second {
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After during the outage")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("during the outage: %d after %v; want a fast 503", resp.StatusCode, took)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ready(r.Addr) {
		t.Error("the replica left its Service during the outage; players would meet the ingress's 502")
	}
	for path, want := range map[string]int{"/invitations/outage": http.StatusOK, "/invitations/nope": http.StatusNotFound} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s during the outage: %d, want %d from memory", path, resp.StatusCode, want)
		}
	}

	time.Sleep(2 * time.Second)
	if err := e.mongo.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, r.Addr, true)
	res := <-crowd
	audit(t, e, []string{"outage"}, res)
	if res.Statuses[http.StatusCreated] == 0 || res.Statuses[0] != 0 {
		t.Errorf("statuses %v: want redemptions and every request answered", res.Statuses)
	}
}

// TestRollingRestartDropsNothing replaces three replicas one at a time under
// continuous load, behind a router that only sends to ready endpoints: not a
// single request may fail.
func TestRollingRestartDropsNothing(t *testing.T) {
	e := newEnv(t, active("rolling", 1000))
	old := []*testbed.Process{e.redeemer(), e.redeemer(), e.redeemer()}
	rt := newRouter(old[0].Addr, old[1].Addr, old[2].Addr)
	defer rt.close()

	ctx, stop := context.WithCancel(context.Background())
	crowd := make(chan loadgen.Result, 1)
	go func() {
		crowd <- loadgen.Run(ctx, loadgen.Config{
			Route: rt.route, Codes: []string{"rolling"}, Requests: 200000, Concurrency: 16, Email: mix.Email,
		})
	}()
	time.Sleep(300 * time.Millisecond)
	for _, p := range old {
		fresh := e.redeemer()
		rt.add(fresh.Addr)
		terminate(t, p) // readiness fails at once, serves through the drain delay, exits 0
		rt.remove(p.Addr)
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	res := <-crowd
	for status, n := range res.Statuses {
		if status == 0 || status >= 500 {
			t.Errorf("%d requests failed with %d during the rollout", n, status)
		}
	}
	if len(res.Outcomes) < 500 {
		t.Errorf("only %d requests during the rollout: the test did not put it under load", len(res.Outcomes))
	}
	audit(t, e, []string{"rolling"}, res)
}
