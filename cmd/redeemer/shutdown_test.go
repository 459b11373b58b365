package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// startRedeemer starts a redeemer on a database of its own (newDatabase),
// writing emails to a temporary --mail-dir.
func startRedeemer(t *testing.T, extra ...string) (*testbed.Process, *mongostore.Store) {
	t.Helper()
	name, st := newDatabase(t)
	return startRedeemerOn(t, name, extra...), st
}

// newDatabase makes the test a database holding the invitation twitter-reg1
// (10 uses) and returns its name.
func newDatabase(t *testing.T) (string, *mongostore.Store) {
	t.Helper()
	db := mongoServer.Database(t)
	st := mongostore.New(db)
	if err := st.PutInvitation(context.Background(), invite.Invitation{Code: "twitter-reg1", MaxUses: 10, State: invite.StateActive}); err != nil {
		t.Fatal(err)
	}
	return db.Name(), st
}

// startRedeemerOn starts a redeemer on database, which may be another's.
func startRedeemerOn(t *testing.T, database string, extra ...string) *testbed.Process {
	t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--mongodb-uri", mongoServer.URI, "--mongodb-database", database, "--poll-interval", "100ms", "--mail-dir", t.TempDir()}, extra...)
	p, err := testbed.StartProcess(redeemerBin, args)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("redeemer output:\n%s", p.Logs())
		}
	})
	waitStatus(t, "http://"+p.Addr+"/readyz", 200)
	return p
}

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within 10s (last: %v %v)", url, want, resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInFlightRequestSurvivesSIGTERM sends half a request, delivers SIGTERM,
// checks that readiness turns false while the process keeps serving, then
// sends the rest: the request gets its normal answer and the process exits 0.
func TestInFlightRequestSurvivesSIGTERM(t *testing.T) {
	p, st := startRedeemer(t, "--drain-delay", "1s")
	conn, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"email":"inflight@example.com"}`
	fmt.Fprintf(conn, "POST /invitations/twitter-reg1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:10])
	time.Sleep(100 * time.Millisecond) // the server is now reading our body

	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, "http://"+p.Addr+"/readyz", 503)

	fmt.Fprint(conn, body[10:])
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer for the in-flight request: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("in-flight request answered %d, want 201", resp.StatusCode)
	}
	if err := p.Wait(20 * time.Second); err != nil {
		t.Fatalf("exit: %v, want status 0", err)
	}
	if n, _ := st.Used(context.Background(), "twitter-reg1"); n != 1 {
		t.Fatalf("%d redemptions stored, want 1", n)
	}
	if !strings.Contains(p.Logs(), `"msg":"Stopped"`) {
		t.Errorf("no clean stop logged")
	}
}

func TestLogsAreJSONAndNeverHoldEmails(t *testing.T) {
	p, _ := startRedeemer(t, "--log-level", "debug")
	for _, e := range []string{"secret.player@example.com", "secret.player@example.com"} {
		resp, err := http.Post("http://"+p.Addr+"/invitations/twitter-reg1", "application/json", strings.NewReader(`{"email":"`+e+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	p.Wait(20 * time.Second)
	for _, line := range strings.Split(strings.TrimSpace(p.Logs()), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("not a JSON log line: %s", line)
		}
		if strings.Contains(line, "secret.player") {
			t.Errorf("email in log: %s", line)
		}
	}
}
