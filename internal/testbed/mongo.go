package testbed

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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

// Mongo is a MongoDB server for tests.
type Mongo struct {
	URI    string
	Client *mongo.Client

	external bool
	keep     bool   // the data directory outlives Stop
	dir      string // FerretDB data directory
	addr     string // host:port FerretDB listens on, kept across restarts

	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *syncWriter
}

// StartMongo connects to MONGODB_URI when it is set, and otherwise starts the
// FerretDB test bed on a free loopback port with a fresh data directory.
func StartMongo() (*Mongo, error) { return StartMongoIn("") }

// StartMongoIn is StartMongo with FerretDB's data kept in dir across runs
// (the local platform); an empty dir means a temporary one, removed by Stop.
func StartMongoIn(dir string) (*Mongo, error) { return StartMongoAt(dir, "127.0.0.1:0") }

// StartMongoAt is StartMongoIn with FerretDB listening on addr (the real
// node's pods reach the host on its bridge address).
func StartMongoAt(dir, addr string) (*Mongo, error) {
	m := &Mongo{}
	if uri := os.Getenv("MONGODB_URI"); uri != "" {
		m.URI, m.external = uri, true
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

// Kill stops the FerretDB process abruptly (SIGKILL), as a crashed server.
func (m *Mongo) Kill() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.external {
		return fmt.Errorf("testbed: cannot kill the external MongoDB at MONGODB_URI")
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
	if m.cmd != nil {
		return fmt.Errorf("testbed: ferretdb is still running")
	}
	return m.start()
}

// Stop ends the server and removes its data unless it was asked to keep it.
func (m *Mongo) Stop() {
	if m.Client != nil {
		m.Client.Disconnect(context.Background())
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

// Logs returns what FerretDB wrote to stderr, for failure messages.
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
