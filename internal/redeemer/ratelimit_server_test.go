package redeemer_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/redeemer"
)

// TestRateLimitKeysIPv6Per64 rotates X-Forwarded-For through IPv6 addresses
// behind a trusted proxy: addresses of one /64 share a bucket, and distinct
// /64s cost at most RateLimitKeys buckets.
func TestRateLimitKeysIPv6Per64(t *testing.T) {
	cfg := redeemer.Config{RateLimit: 2, RateInterval: time.Minute, RateLimitKeys: 50}
	cfg.TrustedProxies = mustPrefixes(t, "127.0.0.0/8", "::1/128")
	r := startReplica(t, newStore(t), cfg)
	c := r.Client()
	post := func(xff string) response {
		// An unknown code answers from memory, so the limiter is what is measured.
		return do(t, c, "POST", r.URL+"/invitations/nope", "application/json", `{"email":"a@example.com"}`, "X-Forwarded-For", xff)
	}

	for i, xff := range []string{"2001:db8:aa:1::1", "2001:db8:aa:1:ffff::2", "2001:db8:aa:1::3"} {
		got := post(xff)
		if i < 2 && got.status != 404 {
			t.Fatalf("request %d from the /64: %d, want 404", i, got.status)
		}
		if i == 2 {
			retry, err := strconv.Atoi(got.header.Get("Retry-After"))
			if got.status != 429 || got.body["code"] != "rate-limited" || err != nil || retry < 1 {
				t.Fatalf("third request from one /64: %d %v Retry-After %q", got.status, got.body, got.header.Get("Retry-After"))
			}
		}
	}
	if got := post("2001:db8:aa:2::1"); got.status != 404 {
		t.Fatalf("the next /64 shares the bucket: %d", got.status)
	}

	for i := range 500 {
		if got := post(fmt.Sprintf("2001:db8:%x:%x::1", i>>16, i&0xffff)); got.status != 404 {
			t.Fatalf("/64 number %d: %d, want 404 (a fresh bucket)", i, got.status)
		}
		if n := r.handler.RateLimitedClients(); n > 50 {
			t.Fatalf("after %d /64s: %d clients remembered, cap 50", i+1, n)
		}
	}
}
