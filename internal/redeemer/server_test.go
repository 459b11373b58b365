package redeemer_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/redeemer"
)

func TestRedeemContract(t *testing.T) {
	paused, expired, revoked := active("hold", 5), active("old", 5), active("gone", 5)
	paused.State, revoked.State = invite.StatePaused, invite.StateRevoked
	expired.ExpiresAt = time.Now().Add(-time.Hour)
	st := newStore(t, active("twitter-reg1", 2), active("other", 5), paused, expired, revoked)
	r := startReplica(t, st, redeemer.Config{})
	c := r.Client()
	url := r.URL + "/invitations/twitter-reg1"
	json := "application/json"

	steps := []struct {
		name          string
		method, path  string
		contentType   string
		body          string
		status        int
		problem       string // expected problem code; empty for success
		allow, detail string
	}{
		{"new redemption", "POST", "/invitations/twitter-reg1", json, `{"email":"Ann+beta@Example.com"}`, 201, "", "", ""},
		{"same person again", "POST", "/invitations/twitter-reg1", json, `{"Email":"ann@example.com"}`, 200, "", "", ""},
		{"same person, other code", "POST", "/invitations/other", json, `{"email":"ann@example.com"}`, 409, "email-used-elsewhere", "", ""},
		{"charset parameter is fine", "POST", "/invitations/twitter-reg1", "application/json; charset=utf-8", `{"email":"bob@example.com"}`, 201, "", "", ""},
		{"full", "POST", "/invitations/twitter-reg1", json, `{"email":"carol@example.com"}`, 410, "invitation-exhausted", "", ""},
		{"paused", "POST", "/invitations/hold", json, `{"email":"carol@example.com"}`, 423, "invitation-paused", "", ""},
		{"expired", "POST", "/invitations/old", json, `{"email":"carol@example.com"}`, 410, "invitation-expired", "", ""},
		{"revoked", "POST", "/invitations/gone", json, `{"email":"carol@example.com"}`, 410, "invitation-revoked", "", ""},
		{"unknown code", "POST", "/invitations/nope", json, `{"email":"carol@example.com"}`, 404, "unknown-invitation", "", ""},
		{"code that cannot exist", "POST", "/invitations/$where", json, `{"email":"carol@example.com"}`, 404, "unknown-invitation", "", ""},
		{"invalid email", "POST", "/invitations/other", json, `{"email":"not an email"}`, 400, "invalid-email", "", "email must look like name@example.com"},
		{"missing email", "POST", "/invitations/other", json, `{}`, 400, "malformed-request", "", `field "email" is required`},
		{"unknown field", "POST", "/invitations/other", json, `{"email":"d@example.com","admin":true}`, 400, "malformed-request", "", `json: unknown field "admin"`},
		{"email not a string", "POST", "/invitations/other", json, `{"email":{"$gt":""}}`, 400, "malformed-request", "", `field "email" must be a string`},
		{"two values", "POST", "/invitations/other", json, `{"email":"d@example.com"}{}`, 400, "malformed-request", "", "the body must hold exactly one JSON value"},
		{"broken JSON", "POST", "/invitations/other", json, `{"email":`, 400, "malformed-request", "", ""},
		{"empty body", "POST", "/invitations/other", json, ``, 400, "malformed-request", "", "the body is empty"},
		{"not JSON", "POST", "/invitations/other", "text/plain", `{"email":"d@example.com"}`, 415, "unsupported-media-type", "", ""},
		{"no content type", "POST", "/invitations/other", "", `{"email":"d@example.com"}`, 415, "unsupported-media-type", "", ""},
		{"too large", "POST", "/invitations/other", json, `{"email":"` + strings.Repeat("a", 5000) + `@example.com"}`, 413, "body-too-large", "", ""},
		{"wrong method", "DELETE", "/invitations/other", "", ``, 405, "method-not-allowed", "GET, HEAD, POST", ""},
		{"no such route", "GET", "/admin", "", ``, 404, "not-found", "", ""},
		{"metrics are on their own listener", "GET", "/metrics", "", ``, 404, "not-found", "", ""},
		{"dot segments", "POST", "/invitations/../invitations/other", json, `{"email":"d@example.com"}`, 404, "not-found", "", ""},
		{"trailing slash", "POST", "/invitations/other/", json, `{"email":"d@example.com"}`, 404, "not-found", "", ""},
	}
	for _, s := range steps {
		resp := do(t, c, s.method, r.URL+s.path, s.contentType, s.body)
		if resp.status != s.status {
			t.Errorf("%s: status %d, want %d (%v)", s.name, resp.status, s.status, resp.body)
			continue
		}
		if s.problem == "" {
			if ct := resp.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: content type %q", s.name, ct)
			}
			continue
		}
		if ct := resp.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: content type %q, want application/problem+json", s.name, ct)
		}
		if resp.body["code"] != s.problem || resp.body["type"] != redeemer.ProblemTypeBase+s.problem ||
			resp.body["status"] != float64(s.status) || resp.body["title"] == "" {
			t.Errorf("%s: problem body %v, want code %s", s.name, resp.body, s.problem)
		}
		if s.detail != "" && resp.body["detail"] != s.detail {
			t.Errorf("%s: detail %q, want %q", s.name, resp.body["detail"], s.detail)
		}
		if got := resp.header.Get("Allow"); got != s.allow {
			t.Errorf("%s: Allow %q, want %q", s.name, got, s.allow)
		}
	}

	// Nothing but the two successful redemptions was stored.
	for code, want := range map[string]int{"twitter-reg1": 2, "other": 0, "hold": 0, "old": 0, "gone": 0} {
		if n, err := st.Used(context.Background(), code); err != nil || n != want {
			t.Errorf("%s: %d redemptions stored, want %d (%v)", code, n, want, err)
		}
	}

	status := do(t, c, "GET", url, "", "")
	if status.status != 200 || status.body["state"] != "exhausted" || status.body["remaining"] != float64(0) || status.body["code"] != "twitter-reg1" {
		t.Errorf("GET status: %d %v", status.status, status.body)
	}
	if got := do(t, c, "GET", r.URL+"/invitations/other", "", ""); got.body["remaining"] != float64(5) || got.body["state"] != "active" {
		t.Errorf("GET other: %v", got.body)
	}
	if got := do(t, c, "GET", r.URL+"/invitations/nope", "", ""); got.status != 404 {
		t.Errorf("GET unknown: %d", got.status)
	}
}

func TestRateLimitPerClientIP(t *testing.T) {
	st := newStore(t, active("a", 100))
	r := startReplica(t, st, redeemer.Config{RateLimit: 2, RateInterval: time.Minute})
	c := r.Client()
	for i := range 2 {
		if got := redeem(t, c, r.URL, "a", fmt.Sprintf("p%d@example.com", i)); got.status != 201 {
			t.Fatalf("request %d: %d", i, got.status)
		}
	}
	got := redeem(t, c, r.URL, "a", "p3@example.com")
	if got.status != 429 || got.body["code"] != "rate-limited" || got.header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d %v Retry-After %q", got.status, got.body, got.header.Get("Retry-After"))
	}
	// X-Forwarded-For is ignored from an untrusted peer.
	got = do(t, c, "POST", r.URL+"/invitations/a", "application/json", `{"email":"p4@example.com"}`, "X-Forwarded-For", "203.0.113.9")
	if got.status != 429 {
		t.Fatalf("forged X-Forwarded-For: %d, want 429", got.status)
	}
	if n, _ := st.Used(context.Background(), "a"); n != 2 {
		t.Fatalf("%d stored, want 2", n)
	}
}

func TestRateLimitTrustsConfiguredProxies(t *testing.T) {
	st := newStore(t, active("a", 100))
	cfg := redeemer.Config{RateLimit: 1, RateInterval: time.Minute}
	cfg.TrustedProxies = mustPrefixes(t, "127.0.0.0/8", "::1/128")
	r := startReplica(t, st, cfg)
	c := r.Client()
	// Two players behind the proxy are limited separately; a forged hop
	// on the left is not what the limit keys on.
	for i, xff := range []string{"198.51.100.1", "6.6.6.6, 198.51.100.2"} {
		got := do(t, c, "POST", r.URL+"/invitations/a", "application/json", fmt.Sprintf(`{"email":"q%d@example.com"}`, i), "X-Forwarded-For", xff)
		if got.status != 201 {
			t.Fatalf("player %d: %d %v", i, got.status, got.body)
		}
	}
	got := do(t, c, "POST", r.URL+"/invitations/a", "application/json", `{"email":"q9@example.com"}`, "X-Forwarded-For", "7.7.7.7, 198.51.100.2")
	if got.status != 429 {
		t.Fatalf("second request of one player: %d, want 429", got.status)
	}
}

func TestReadinessFollowsDrain(t *testing.T) {
	r := startReplica(t, newStore(t, active("a", 1)), redeemer.Config{})
	c := r.Client()
	if got := do(t, c, "GET", r.URL+"/readyz", "", ""); got.status != 200 {
		t.Fatalf("readyz before drain: %d", got.status)
	}
	r.handler.Drain()
	if got := do(t, c, "GET", r.URL+"/readyz", "", ""); got.status != 503 {
		t.Fatalf("readyz while draining: %d", got.status)
	}
	if got := do(t, c, "GET", r.URL+"/healthz", "", ""); got.status != 200 {
		t.Fatalf("healthz while draining: %d", got.status)
	}
	if got := redeem(t, c, r.URL, "a", "late@example.com"); got.status != 201 {
		t.Fatalf("a request routed here while draining is still served: %d", got.status)
	}
}

// TestMetricsAreExposed: the HTTP metrics reach the metrics listener's
// GET /metrics, and that listener serves nothing else.
func TestMetricsAreExposed(t *testing.T) {
	r := startReplica(t, newStore(t, active("a", 1)), redeemer.Config{})
	c := r.Client()
	redeem(t, c, r.URL, "a", "m@example.com")
	redeem(t, c, r.URL, "a", "n@example.com")
	ms := httptest.NewServer(redeemer.MetricsHandler(r.registry))
	defer ms.Close()
	if got := do(t, ms.Client(), "GET", ms.URL+"/invitations/a", "", ""); got.status != 404 {
		t.Errorf("the metrics listener serves players' routes: %d", got.status)
	}
	resp, err := ms.Client().Get(ms.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := fmt.Fprint(&b, readAll(t, resp)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`velvetrope_http_requests_total{code="201",route="redeem"} 1`,
		`velvetrope_http_requests_total{code="410",route="redeem"} 1`,
		`velvetrope_redemption_outcomes_total{result="redeemed"} 1`,
		`velvetrope_redemption_outcomes_total{result="invitation-exhausted"} 1`,
		`velvetrope_http_request_duration_seconds_bucket{route="redeem"`,
		`velvetrope_http_requests_in_flight`,
		// One winner (the 410 is not one).
		`velvetrope_redemption_winner_duration_seconds_count 1`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
