package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

// TestDevPlatform runs `make dev`'s program as a person would: the printed
// curl redeems twitter-reg1 through the proxy, kubectl shows Used rising, a
// mail file appears, and Ctrl-C stops everything cleanly.
func TestDevPlatform(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbed.Build("./hack/dev", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p, err := testbed.StartProcess(bin, []string{"--dir", dir, "--listen", "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.Kill()
		if t.Failed() {
			t.Logf("make dev output:\n%s", tail(p.Logs(), 4000))
		}
	}()
	base := "http://" + p.Addr

	deadline := time.Now().Add(60 * time.Second) // the operator creates the fleet, the stand-in kubelet starts it
	for {
		resp, err := http.Post(base+"/invitations/twitter-reg1", "application/json", strings.NewReader(`{"email":"dev.player@example.com"}`))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no redemption through the proxy within 60s (last: %v %v)", resp, err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	kubectl := regexp.MustCompile(`(\S+/kubectl) --kubeconfig (\S+) get inv -w`).FindStringSubmatch(p.Logs())
	if kubectl == nil {
		t.Fatal("the printed instructions lack the kubectl line")
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		out, _ := exec.Command(kubectl[1], "--kubeconfig", kubectl[2], "get", "inv", "-n", "default").CombinedOutput()
		if regexp.MustCompile(`(?m)^twitter-reg1\s+twitter-reg1\s+1000\s+1\s+Active\s+twitter\s`).Match(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl get inv does not show the redemption:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}

	deadline = time.Now().Add(30 * time.Second)
	for {
		if files, _ := filepath.Glob(filepath.Join(dir, "mail", "*.eml")); len(files) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no mail file within 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}

	if err := p.Cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(60 * time.Second); err != nil {
		t.Fatalf("make dev did not stop cleanly on Ctrl-C: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd")); err != nil {
		t.Errorf("the control plane's data is not kept: %v", err)
	}
}
