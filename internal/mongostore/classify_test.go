package mongostore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

// TestClassify: only a document the server refused is a definite failure;
// every other driver error is an unknown outcome (503, retry), with the
// reason read from the server's labels and codes, never its message.
func TestClassify(t *testing.T) {
	wce := func(code int, name string) error {
		return mongo.BulkWriteException{WriteConcernError: &mongo.WriteConcernError{Code: code, Name: name, Message: "waiting for replication timed out"}}
	}
	tests := []struct {
		name   string
		err    error
		reason string // "" for a definite failure
	}{
		{"stepdown with RetryableWriteError, after the driver's own retry", mongo.CommandError{Code: 10107, Name: "NotWritablePrimary", Labels: []string{"RetryableWriteError"}}, "not-primary"},
		{"interrupted by a replica-set state change", mongo.CommandError{Code: 11602, Name: "InterruptedDueToReplStateChange"}, "not-primary"},
		{"primary stepped down", mongo.CommandError{Code: 189, Name: "PrimarySteppedDown"}, "not-primary"},
		{"shutdown in progress", mongo.CommandError{Code: 91, Name: "ShutdownInProgress"}, "not-primary"},
		{"a write error carrying a retryable label in a bulk", mongo.BulkWriteException{Labels: []string{"RetryableWriteError"}, WriteErrors: []mongo.BulkWriteError{{WriteError: mongo.WriteError{Code: 11602}}}}, "not-primary"},
		{"write concern timed out (wtimeout)", wce(64, "WriteConcernFailed"), "write-concern"},
		{"write concern cut by maxTimeMS", wce(50, "MaxTimeMSExpired"), "write-concern"},
		{"a write concern error whatever its code", wce(2, "BadValue"), "write-concern"},
		{"the operation's deadline", fmt.Errorf("insert: %w", context.DeadlineExceeded), "timeout"},
		{"maxTimeMS expired", mongo.CommandError{Code: 50, Name: "MaxTimeMSExpired"}, "timeout"},
		{"network error", mongo.CommandError{Labels: []string{"NetworkError"}, Wrapped: errors.New("connection reset")}, "network"},
		{"no server selectable", topology.ServerSelectionError{Wrapped: errors.New("no primary")}, "network"},
		{"an error we do not know", mongo.CommandError{Code: 8000, Name: "AtlasError"}, "other"},
		{"document refused by a validator", mongo.WriteError{Code: 121, Message: "Document failed validation"}, ""},
		{"bad value", mongo.CommandError{Code: 2, Name: "BadValue"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mongostore.Classify("op", tt.err)
			if got := invite.UnavailableReason(err); got != tt.reason {
				t.Fatalf("reason %q, want %q (%v)", got, tt.reason, err)
			}
			if errors.Is(err, invite.ErrUnavailable) != (tt.reason != "") {
				t.Fatalf("errors.Is(ErrUnavailable) = %v for %v", !(tt.reason != ""), err)
			}
			if !strings.Contains(err.Error(), tt.err.Error()) {
				t.Fatalf("the driver's error is kept for the log: %v", err)
			}
		})
	}
	if mongostore.Classify("op", nil) != nil {
		t.Fatal("nil stays nil")
	}
}
