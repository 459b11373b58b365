// Package e2e holds the end-to-end tests that run the real binaries as
// processes on loopback: fault injection, rolling restarts, hostile input and
// the load tool. Every test is bounded in requests and in time.
package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

var redeemerBin, loadBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		for _, b := range []struct {
			pkg string
			dst *string
		}{{"./cmd/redeemer", &redeemerBin}, {"./cmd/velvetrope-load", &loadBin}} {
			if *b.dst, err = testbed.Build(b.pkg, dir); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}())
}

// env is one test's MongoDB (its own FerretDB: some tests stop it; or a
// database of its own on the server at MONGODB_URI) with invitations in
// place, and the redeemers it starts.
type env struct {
	t     *testing.T
	mongo *testbed.Mongo
	db    string
	store *mongostore.Store
}

func newEnv(t *testing.T, invs ...invite.Invitation) *env {
	t.Helper()
	m, err := testbed.StartMongo()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	db := m.Database(t) // dropped when t ends, which an external server needs
	e := &env{t: t, mongo: m, db: db.Name()}
	e.store = mongostore.New(db)
	ctx := context.Background()
	if err := e.store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	for _, inv := range invs {
		if err := e.store.PutInvitation(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func active(code string, maxUses int) invite.Invitation {
	return invite.Invitation{Code: code, MaxUses: maxUses, State: invite.StateActive, Campaign: "e2e"}
}

// redeemer starts a redeemer process and waits until it is ready.
func (e *env) redeemer(extra ...string) *testbed.Process {
	e.t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--mongodb-uri", e.mongo.URI, "--mongodb-database", e.db,
		"--rate-limit", "0", "--poll-interval", "200ms", "--usage-interval", "500ms", "--drain-delay", "1s",
		"--peer-listen", "127.0.0.1:0", "--peer-heartbeat", "200ms",
		"--mail-dir", e.t.TempDir()}, extra...)
	p, err := testbed.StartProcess(redeemerBin, args)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		p.Kill()
		if e.t.Failed() {
			e.t.Logf("redeemer %s output:\n%s", p.Addr, tail(p.Logs(), 4000))
		}
	})
	waitReady(e.t, p.Addr, true)
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ready reports whether addr answers /readyz with 200.
func ready(addr string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func waitReady(t *testing.T, addr string, want bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for ready(addr) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: readiness did not become %v within 20s", addr, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUsed waits until code has at least n redemptions.
func (e *env) waitUsed(code string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		used, err := e.store.Used(context.Background(), code)
		if err == nil && used >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: fewer than %d redemptions after 30s", code, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// router sends requests only to ready endpoints, round-robin, as a
// Kubernetes Service does with endpoints that pass their readiness probe.
type router struct {
	mu    sync.Mutex
	ready []string
	all   map[string]bool
	stop  chan struct{}
	done  chan struct{}
}

func newRouter(addrs ...string) *router {
	r := &router{all: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	for _, a := range addrs {
		r.all[a] = true
	}
	r.probe()
	go func() {
		defer close(r.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.probe()
			}
		}
	}()
	return r
}

func (r *router) probe() {
	r.mu.Lock()
	var addrs []string
	for a := range r.all {
		addrs = append(addrs, a)
	}
	r.mu.Unlock()
	var ok []string
	for _, a := range addrs {
		if ready(a) {
			ok = append(ok, "http://"+a)
		}
	}
	r.mu.Lock()
	r.ready = ok
	r.mu.Unlock()
}

func (r *router) add(addr string) { r.mu.Lock(); r.all[addr] = true; r.mu.Unlock(); r.probe() }

func (r *router) remove(addr string) { r.mu.Lock(); delete(r.all, addr); r.mu.Unlock() }

func (r *router) route(i int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ready) == 0 {
		return "http://127.0.0.1:1" // no endpoint: the request fails, as it would
	}
	return r.ready[i%len(r.ready)]
}

func (r *router) close() { close(r.stop); <-r.done }

// terminate sends SIGTERM and waits for a clean exit.
func terminate(t *testing.T, p *testbed.Process) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(30 * time.Second); err != nil {
		t.Fatalf("redeemer %s did not exit cleanly after SIGTERM: %v\n%s", p.Addr, err, tail(p.Logs(), 3000))
	}
}
