package redeemer_test

import (
	"net/http"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/redeemer"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// TestUnknownOutcomeIs503: a primary steps down after the insert landed and
// the driver's retry fails too. The player hears 503 with Retry-After, never
// a 500; retrying, they hear 200, and they are stored once.
func TestUnknownOutcomeIs503(t *testing.T) {
	st := newStore(t, active("u", 5))
	faults := &testbed.Faults{Store: st}
	r := startReplica(t, faults, redeemer.Config{})
	stepdown := mongo.CommandError{Code: 11602, Name: "InterruptedDueToReplStateChange", Labels: []string{"RetryableWriteError"}}
	faults.FailNextClaim(mongostore.Classify("claiming slots", stepdown), true)

	got := redeem(t, r.Client(), r.URL, "u", "ann@example.com")
	if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" || got.body["code"] != "unavailable" {
		t.Fatalf("unknown outcome: %d %v Retry-After %q; want 503 unavailable with Retry-After", got.status, got.body, got.header.Get("Retry-After"))
	}
	eventuallyStatus(t, func() int { return redeem(t, r.Client(), r.URL, "u", "ann@example.com").status }, http.StatusOK)
	if n, _ := st.Used(t.Context(), "u"); n != 1 {
		t.Fatalf("stored %d times", n)
	}
}

// eventuallyStatus calls get until it returns want: a 503 is answered at
// once until the replica's next good poll, then the retry goes through.
func eventuallyStatus(t *testing.T, get func() int, want int) {
	t.Helper()
	var got int
	for range 200 {
		if got = get(); got == want {
			return
		}
		if got != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("status %d, want %d", got, want)
}
