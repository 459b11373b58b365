package redeemer_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/redeemer"
)

// TestACrowdAnsweredFromMemoryIsStillBusy: mail waits while players'
// requests arrive at crowd rates, even when none waits for storage (a full
// code's crowd), and not once they stop.
func TestACrowdAnsweredFromMemoryIsStillBusy(t *testing.T) {
	srv, err := redeemer.NewServer(redeemer.Config{}, fixedRedeemer{err: invite.ErrExhausted}, prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if srv.Busy() {
		t.Fatal("busy before any request")
	}
	start := time.Now()
	for range 600 {
		req := httptest.NewRequest(http.MethodPost, "/invitations/full", strings.NewReader(`{"email":"a@example.com"}`))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != http.StatusGone {
			t.Fatalf("status %d", w.Code)
		}
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("600 requests took %v: below the crowd rate on this machine, the test cannot tell", took)
	}
	if !srv.Busy() {
		t.Error("600 requests within a second did not count as a crowd")
	}
	time.Sleep(200 * time.Millisecond)
	if srv.Busy() {
		t.Error("still busy after the requests stopped")
	}
}
