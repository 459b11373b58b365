package e2e

import (
	"bufio"
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
	"github.com/velvetrope/velvetrope/internal/testbed/node"
)

// TestDevPlatform runs `make dev`'s program as a person would: it starts the
// real node, the printed curl redeems twitter-reg1 through the campaign's
// Service, kubectl shows Used rising and the fleet's pods Running, a mail
// file appears, and Ctrl-C stops everything and removes what the node made.
func TestDevPlatform(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbed.Build("./hack/dev", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--dir", dir)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	printed := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			printed <- sc.Text()
		}
		close(printed)
	}()
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("make dev output:\n%s", tail(string(b), 4000))
		}
	}()

	var out strings.Builder
	curl := regexp.MustCompile(`curl -i -X POST (http://\S+)/invitations/twitter-reg1`)
	// A first run builds the node's binaries, and the node waits while
	// another package's test node runs (one per machine).
	timeout := time.After(15 * time.Minute)
	var base string
	for base == "" {
		select {
		case line, ok := <-printed:
			if !ok {
				t.Fatalf("make dev ended before printing the curl:\n%s", out.String())
			}
			out.WriteString(line + "\n")
			if m := curl.FindStringSubmatch(line); m != nil {
				base = m[1]
			}
		case <-timeout:
			t.Fatalf("make dev printed no curl within 15 minutes:\n%s", out.String())
		}
	}
	for len(printed) > 0 || !strings.Contains(out.String(), "Mail:") {
		out.WriteString(<-printed + "\n")
	}

	resp, err := http.Post(base+"/invitations/twitter-reg1", "application/json", strings.NewReader(`{"email":"dev.player@example.com"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("the printed curl: %s", resp.Status)
	}

	kubectl := regexp.MustCompile(`(\S+/kubectl\S*) --kubeconfig (\S+) get inv -w`).FindStringSubmatch(out.String())
	if kubectl == nil {
		t.Fatalf("the printed instructions lack the kubectl line:\n%s", out.String())
	}
	deadline := time.Now().Add(30 * time.Second)
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
	pods, _ := exec.Command(kubectl[1], "--kubeconfig", kubectl[2], "get", "pods", "-n", "default", "-l", "velvetrope.io/campaign=twitter").CombinedOutput()
	if !regexp.MustCompile(`(?m)^velvetrope-twitter-\S+\s+1/1\s+Running\s`).Match(pods) {
		t.Errorf("kubectl get pods does not show the twitter fleet Running and Ready:\n%s", pods)
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

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("make dev did not stop cleanly on Ctrl-C: %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("make dev did not stop within 90s of Ctrl-C")
	}
	// The test bed keeps its data in dir; a server at MONGODB_URI, its own.
	if _, err := os.Stat(filepath.Join(dir, "ferretdb")); err != nil && testbed.ExternalMongoURI() == "" {
		t.Errorf("the MongoDB data is not kept: %v", err)
	}
	if _, err := os.Stat(node.RunDir); err == nil {
		t.Errorf("Ctrl-C left the node's %s behind", node.RunDir)
	}
}
