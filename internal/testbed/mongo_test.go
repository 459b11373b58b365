package testbed

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// replicaSetURI is the URI of hack/mongodb's replica set. Nothing listens on
// it here: choosing the external server makes no connection, since the
// driver connects lazily.
const replicaSetURI = "mongodb://127.0.0.1:27017,127.0.0.1:27018,127.0.0.1:27019/?replicaSet=velvetrope&w=majority&retryWrites=true"

// skipRecorder is a Skipper that records instead of ending the test.
type skipRecorder struct{ skipped []any }

func (s *skipRecorder) Helper()          {}
func (s *skipRecorder) Skip(args ...any) { s.skipped = append(s.skipped, args...) }

func TestMongoDBURIChoosesTheExternalServer(t *testing.T) {
	t.Setenv(MongoURIEnv, replicaSetURI)
	if got := ExternalMongoURI(); got != replicaSetURI {
		t.Fatalf("ExternalMongoURI() = %q", got)
	}
	dir := filepath.Join(t.TempDir(), "ferretdb")
	m, err := StartMongoIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if !m.External || m.URI != replicaSetURI || m.Client == nil {
		t.Fatalf("External %v, URI %q, client %v: want the server at MONGODB_URI", m.External, m.URI, m.Client)
	}
	if m.PID() != 0 || m.dir != "" || m.Logs() != "" {
		t.Errorf("PID %d, data directory %q, logs %q: no FerretDB may be started for an external server", m.PID(), m.dir, m.Logs())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the test bed's data directory was made for an external server: %v", err)
	}
	for name, op := range map[string]func() error{"Kill": m.Kill, "Restart": m.Restart} {
		if err := op(); err == nil || !strings.Contains(err.Error(), MongoURIEnv) {
			t.Errorf("%s on the external server = %v, want an error naming %s", name, err, MongoURIEnv)
		}
	}
	var rec skipRecorder
	m.RequireOwnServer(&rec)
	if len(rec.skipped) != 1 || rec.skipped[0] != OwnServerSkip {
		t.Fatalf("RequireOwnServer skipped with %v, want %q", rec.skipped, OwnServerSkip)
	}
	if !strings.Contains(OwnServerSkip, "MONGODB_URI") || strings.Contains(OwnServerSkip, "27017") {
		t.Errorf("the skip message must name MONGODB_URI and never the URI itself: %q", OwnServerSkip)
	}

	// With a real *testing.T the test ends there, skipped.
	reached := false
	if !t.Run("fault test", func(t *testing.T) {
		m.RequireOwnServer(t)
		reached = true
	}) || reached {
		t.Errorf("a fault test on the external server went on (reached %v) instead of skipping", reached)
	}
}

// TestUnsetMongoDBURIStartsTheTestBed is the default path: FerretDB is
// started, the fault tests' helpers work on it, and nothing skips.
func TestUnsetMongoDBURIStartsTheTestBed(t *testing.T) {
	t.Setenv(MongoURIEnv, "")
	if got := ExternalMongoURI(); got != "" {
		t.Fatalf("ExternalMongoURI() = %q with MONGODB_URI empty", got)
	}
	m, err := StartMongo()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop) // after the database's drop
	if m.External || m.PID() == 0 || !strings.HasPrefix(m.URI, "mongodb://127.0.0.1:") {
		t.Fatalf("External %v, PID %d, URI %q: want the FerretDB test bed on loopback", m.External, m.PID(), m.URI)
	}
	var rec skipRecorder
	m.RequireOwnServer(&rec)
	if len(rec.skipped) != 0 {
		t.Fatalf("RequireOwnServer skipped on the test bed: %v", rec.skipped)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	coll := m.Database(t).Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Kill(); err != nil {
		t.Fatal(err)
	}
	if m.PID() != 0 {
		t.Error("the killed test bed still has a process")
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("after the restart: %d documents, %v; want the data kept\n%s", n, err, m.Logs())
	}
}

func TestAURIForPodsMustNotNameLoopback(t *testing.T) {
	const node = "10.213.0.1:0" // where the real node's pods reach the host
	for _, tt := range []struct {
		uri, listen string
		refused     bool
	}{
		{replicaSetURI, "127.0.0.1:0", false}, // tests on this host
		{replicaSetURI, node, true},
		{"mongodb://localhost:27017", node, true},
		{"mongodb://user:p@ss@[::1]:27017/admin?replicaSet=rs", node, true},
		{"mongodb://192.0.2.7:27017,192.0.2.7:27018,127.0.0.1:27019/?replicaSet=velvetrope", node, true},
		{"mongodb://192.0.2.7:27017,192.0.2.7:27018,192.0.2.7:27019/?replicaSet=velvetrope&w=majority", node, false},
		{"mongodb://mongo-0.mongo.db.svc:27017/?replicaSet=rs0", node, false},
		{"mongodb+srv://cluster0.example.net/", node, false},
	} {
		err := reachableAs(tt.uri, tt.listen)
		if (err != nil) != tt.refused {
			t.Errorf("reachableAs(%q, %q) = %v, want refused %v", tt.uri, tt.listen, err, tt.refused)
		}
		if err != nil && (!strings.Contains(err.Error(), MongoURIEnv) || !strings.Contains(err.Error(), "MONGODB_RS_HOST") || strings.Contains(err.Error(), "p@ss")) {
			t.Errorf("the refusal must name MONGODB_URI and the way out, never a password: %v", err)
		}
	}
	// StartMongoAt refuses before connecting, as the node harness and
	// make dev call it.
	t.Setenv(MongoURIEnv, replicaSetURI)
	if m, err := StartMongoAt("", node); err == nil {
		m.Stop()
		t.Fatal("StartMongoAt accepted a loopback MONGODB_URI for the node's pods")
	}
}
