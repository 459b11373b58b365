package testbed

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Build compiles the main package pkg (for example "./cmd/redeemer") of the
// velvetrope module into dir and returns the binary's path.
func Build(pkg, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// Process is a velvetrope binary running as a child process.
type Process struct {
	Cmd  *exec.Cmd
	Addr string // from its "Listening" log line
	// MetricsAddr is where it serves GET /metrics, from the same line's
	// metricsAddr (the redeemer's --metrics-addr); empty when it has none.
	MetricsAddr string

	logs   *syncWriter
	exited chan struct{}
	err    error
}

// StartProcess runs bin and waits until it logs {"msg":"Listening","addr":…}
// (with "metricsAddr":… when it serves metrics apart), which our binaries do
// once their listeners are bound (so port 0 works).
// Everything it prints is kept for Logs; extraEnv is added to the environment.
func StartProcess(bin string, args []string, extraEnv ...string) (*Process, error) {
	return StartProcessEcho(nil, bin, args, extraEnv...)
}

// StartProcessEcho is StartProcess that also copies the process's output to
// echo (when not nil), for programs a person watches.
func StartProcessEcho(echo io.Writer, bin string, args []string, extraEnv ...string) (*Process, error) {
	p := &Process{Cmd: exec.Command(bin, args...), logs: &syncWriter{}, exited: make(chan struct{})}
	p.Cmd.Env = append(os.Environ(), extraEnv...)
	var sink io.Writer = p.logs
	if echo != nil {
		sink = io.MultiWriter(p.logs, echo)
	}
	p.Cmd.Stderr = sink
	stdout, err := p.Cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	type listening struct{ Msg, Addr, MetricsAddr string }
	addr := make(chan listening, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Bytes()
			sink.Write(append(line, '\n'))
			var l listening
			if json.Unmarshal(line, &l) == nil && l.Msg == "Listening" && l.Addr != "" {
				select {
				case addr <- l:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { p.err = p.Cmd.Wait(); close(p.exited) }()
	select {
	case l := <-addr:
		p.Addr, p.MetricsAddr = l.Addr, l.MetricsAddr
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before listening: %v\n%s", filepath.Base(bin), p.err, p.logs)
	case <-time.After(30 * time.Second):
		p.Cmd.Process.Kill()
		return nil, fmt.Errorf("%s did not listen within 30s\n%s", filepath.Base(bin), p.logs)
	}
}

// Wait waits up to timeout for the process to exit and returns its error.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %v", timeout)
	}
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Logs returns everything the process printed so far.
func (p *Process) Logs() string { return p.logs.String() }

// Kill ends the process at once and waits for it.
func (p *Process) Kill() {
	p.Cmd.Process.Kill()
	<-p.exited
}
