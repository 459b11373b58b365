package testbed

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// MongoURIEnv names the environment variable that points every test, the
// e2e and cluster harnesses, make dev, make run-local and make bench at an
// external MongoDB (a genuine replica set, hack/mongodb) instead of the
// FerretDB test bed.
const MongoURIEnv = "MONGODB_URI"

// ExternalMongoURI returns the server named by MONGODB_URI, or "" when tests
// start the FerretDB test bed. Callers that start a server use StartMongo*,
// which decide with it; it is exported for the few that only need to know.
func ExternalMongoURI() string { return os.Getenv(MongoURIEnv) }

// OwnServerSkip is why RequireOwnServer skips a test. It never holds the URI,
// which may carry a password.
const OwnServerSkip = "this test kills and restarts MongoDB, which it can do only to the FerretDB test bed it starts; " +
	MongoURIEnv + " is set, so this run uses an external server: unset " + MongoURIEnv + " to run it (docs/reliability.md says what stands in for it on a replica set)"

// Mongo is a MongoDB server for tests: the FerretDB test bed this process
// started, or the external server at MONGODB_URI.
type Mongo struct {
	URI    string
	Client *mongo.Client
	// External is true when the server is the one at MONGODB_URI: tests
	// share it with whatever else uses it, so they never stop, kill or
	// restart it (Kill and Restart return an error; RequireOwnServer
	// skips the tests that would).
	External bool

	keep bool   // the data directory outlives Stop
	dir  string // FerretDB data directory
	addr string // host:port FerretDB listens on, kept across restarts

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *syncWriter
}

// StartMongo connects to MONGODB_URI when it is set (External; nothing is
// started and no data directory is made), and otherwise starts the FerretDB
// test bed on a free loopback port with a fresh data directory.
func StartMongo() (*Mongo, error) { return StartMongoIn("") }

// StartMongoIn is StartMongo with FerretDB's data kept in dir across runs
// (the local platform); an empty dir means a temporary one, removed by Stop.
func StartMongoIn(dir string) (*Mongo, error) { return StartMongoAt(dir, "127.0.0.1:0") }

// StartMongoAt is StartMongoIn with FerretDB listening on addr (the real
// node's pods reach the host on its bridge address). An external server must
// then be reachable from elsewhere too: a MONGODB_URI naming a loopback host
// is refused with a message saying what to do, rather than handed to pods
// that cannot reach it.
func StartMongoAt(dir, addr string) (*Mongo, error) {
	m := &Mongo{}
	if uri := ExternalMongoURI(); uri != "" {
		if err := reachableAs(uri, addr); err != nil {
			return nil, err
		}
		m.URI, m.External = uri, true
	} else {
		m.addr, m.keep = addr, dir != ""
		if dir == "" {
			var err error
			if dir, err = os.MkdirTemp("", "velvetrope-ferretdb-"); err != nil {
				return nil, err
			}
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		m.dir = dir
		if err := m.start(); err != nil {
			if !m.keep {
				os.RemoveAll(dir)
			}
			return nil, err
		}
	}
	client, err := mongo.Connect(options.Client().ApplyURI(m.URI).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		m.Stop()
		return nil, err
	}
	m.Client = client
	return m, nil
}

func (m *Mongo) start() error {
	bin, err := ferretdbTool.binary()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "--dir", m.dir, "--listen", m.addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	m.logs = &syncWriter{}
	cmd.Stderr = m.logs
	if err := cmd.Start(); err != nil {
		return err
	}
	lines := make(chan string, 1)
	go func() {
		line, _ := readFirstLine(bufio.NewReader(stdout))
		lines <- line
	}()
	select {
	case uri := <-lines:
		if !strings.HasPrefix(uri, "mongodb://") {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("testbed: ferretdb did not start: %s", m.logs)
		}
		m.URI = uri
		m.addr = strings.TrimSuffix(strings.TrimPrefix(uri, "mongodb://"), "/")
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("testbed: ferretdb printed no address within 30s: %s", m.logs)
	}
	m.cmd = cmd
	return nil
}

// PID is the FerretDB process's id (0 for an external MongoDB), for
// measuring what it costs.
func (m *Mongo) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// reachableAs checks an external uri against the address FerretDB would
// have listened on: when that is not a loopback address, the caller hands the
// URI to clients off this host's loopback (the real node's pods), so the URI
// must not name a loopback host. A mongodb+srv URI names no host to check.
func reachableAs(uri, listen string) error {
	if host, _, err := net.SplitHostPort(listen); err != nil || loopback(host) {
		return nil
	}
	rest, ok := strings.CutPrefix(uri, "mongodb://")
	if !ok {
		return nil
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	for _, h := range strings.Split(rest, ",") {
		host := h
		if hh, _, err := net.SplitHostPort(h); err == nil {
			host = hh
		}
		if loopback(strings.Trim(host, "[]")) {
			return fmt.Errorf("testbed: %s names %s, a loopback address the real node's pods cannot reach (they get this URI in their Secret); "+
				"run the replica set on an address of this machine that pods reach (hack/mongodb/README.md: MONGODB_RS_HOST) and name that address in %[1]s",
				MongoURIEnv, h)
		}
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RequireOwnServer skips t when the server is the external one at
// MONGODB_URI, for a test that kills or restarts MongoDB (a fault test): only
// a server the test started may be taken down. On the FerretDB test bed it
// does nothing, so the default path never skips.
func (m *Mongo) RequireOwnServer(t Skipper) {
	t.Helper()
	if m.External {
		t.Skip(OwnServerSkip)
	}
}

// Skipper is what RequireOwnServer needs of a test: a *testing.T, or
// GinkgoT() in a Ginkgo spec.
type Skipper interface {
	Helper()
	Skip(args ...any)
}

// Kill stops the FerretDB process abruptly (SIGKILL), as a crashed server.
func (m *Mongo) Kill() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.External {
		return errExternal
	}
	if m.cmd == nil {
		return nil
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	m.cmd.Wait()
	m.cmd = nil
	return nil
}

// Restart starts FerretDB again on the same address with the same data.
func (m *Mongo) Restart() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.External {
		return errExternal
	}
	if m.cmd != nil {
		return fmt.Errorf("testbed: ferretdb is still running")
	}
	return m.start()
}

var errExternal = fmt.Errorf("testbed: the external MongoDB at %s is not this test's to kill or restart (call RequireOwnServer first)", MongoURIEnv)

// Stop ends the server and removes its data unless it was asked to keep it;
// for an external server it only disconnects.
func (m *Mongo) Stop() {
	if m.Client != nil {
		m.Client.Disconnect(context.Background())
	}
	if m.External {
		return
	}
	m.Kill()
	if m.dir != "" && !m.keep {
		os.RemoveAll(m.dir)
	}
}

// Database returns a database of its own for t, dropped when t ends.
func (m *Mongo) Database(t testing.TB) *mongo.Database {
	t.Helper()
	db := m.Client.Database(UniqueName("t"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		db.Drop(ctx)
	})
	return db
}

// UniqueName returns prefix followed by random hex, short enough for any
// database name limit.
func UniqueName(prefix string) string {
	b := make([]byte, 8)
	rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// Logs returns what FerretDB wrote to stderr, for failure messages ("" for an
// external server).
func (m *Mongo) Logs() string {
	if m.logs == nil {
		return ""
	}
	return m.logs.String()
}

// syncWriter collects a child's stderr, written by os/exec's copier while
// tests may read it.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
