package redeemer

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
)

func TestClientKey(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		if got := clientKey(netip.MustParseAddr(tt.a)); got != netip.MustParsePrefix(tt.b) {
			t.Errorf("clientKey(%s) = %s, want %s", tt.a, got, tt.b)
		}
	}
	same := func(a, b string) bool {
		return clientKey(netip.MustParseAddr(a)) == clientKey(netip.MustParseAddr(b))
	}
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2:dead:beef:0:7", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"192.0.2.1", "::c000:201", false}, // IPv4-compatible is not IPv4-mapped
	} {
		if got := same(tt.a, tt.b); got != tt.same {
			t.Errorf("%s and %s share a key: %v, want %v", tt.a, tt.b, got, tt.same)
		}
	}
	if got := clientKey(netip.Addr{}); got != (netip.Prefix{}) {
		t.Errorf("clientKey(zero) = %s, want the zero Prefix", got)
	}
}

func key(s string) netip.Prefix { return clientKey(netip.MustParseAddr(s)) }

func mustLimiter(t *testing.T, limit uint64, interval time.Duration, keys int) *clientLimiter {
	t.Helper()
	l, err := newClientLimiter(limit, interval, keys)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestClientLimiterLimits(t *testing.T) {
	l := mustLimiter(t, 3, time.Minute, 100)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if ok, _ := l.allow(key("2001:db8:1:2::1"), t0); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	// The fourth, from another address of the same /64, waits for the next
	// token: one interval / limit.
	ok, wait := l.allow(key("2001:db8:1:2::99"), t0)
	if ok || wait <= 19*time.Second || wait > 20*time.Second {
		t.Fatalf("fourth request: ok %v, wait %v; want refused, wait 20s", ok, wait)
	}
	if ok, _ := l.allow(key("2001:db8:1:3::1"), t0); !ok {
		t.Fatal("another /64 shares the bucket")
	}
	if ok, _ := l.allow(key("2001:db8:1:2::1"), t0.Add(20*time.Second)); !ok {
		t.Fatal("no token after one refill period")
	}
	if ok, _ := l.allow(key("2001:db8:1:2::1"), t0.Add(20*time.Second)); ok {
		t.Fatal("two tokens after one refill period")
	}
}

func TestClientLimiterForgetsIdleClients(t *testing.T) {
	l := mustLimiter(t, 2, time.Minute, 100)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.allow(key("192.0.2.1"), t0)
	l.allow(key("192.0.2.1"), t0)
	l.allow(key("192.0.2.2"), t0.Add(time.Second))
	if ok, _ := l.allow(key("192.0.2.3"), t0.Add(time.Minute-time.Nanosecond)); !ok || l.size() != 3 {
		t.Fatalf("before an idle interval: %d clients, want 3", l.size())
	}
	// One interval after its last request, 192.0.2.1's bucket is full again
	// and forgotten; the others were seen less than an interval ago.
	l.allow(key("192.0.2.3"), t0.Add(time.Minute))
	if n := l.size(); n != 2 {
		t.Fatalf("after 192.0.2.1 idled an interval: %d clients, want 2", n)
	}
	if _, found := l.keys.Peek(key("192.0.2.1")); found {
		t.Fatal("192.0.2.1 still remembered")
	}
	// Forgetting changed nothing for it: it may send a full burst.
	for i := range 2 {
		if ok, _ := l.allow(key("192.0.2.1"), t0.Add(time.Minute)); !ok {
			t.Fatalf("request %d after idling refused", i)
		}
	}
	// A flood of stale clients is cleared a few per request.
	for i := range 1000 {
		l.allow(clientKey(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})), t0.Add(2*time.Minute))
	}
	for i := 0; l.size() > 1; i++ {
		if i > 1000 {
			t.Fatalf("%d clients still remembered after %d requests", l.size(), i)
		}
		l.allow(key("192.0.2.9"), t0.Add(4*time.Minute))
	}
}

func TestClientLimiterEvictsLeastRecentlyUsed(t *testing.T) {
	l := mustLimiter(t, 1, time.Minute, 2)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b, c := key("192.0.2.1"), key("192.0.2.2"), key("2001:db8::1")
	l.allow(a, t0)
	l.allow(b, t0)
	l.allow(a, t0) // refused, but a is now the most recently used
	l.allow(c, t0) // beyond the cap: b is forgotten
	if n := l.size(); n != 2 {
		t.Fatalf("%d clients, want the cap 2", n)
	}
	if ok, _ := l.allow(a, t0); ok {
		t.Fatal("the recently used client lost its empty bucket")
	}
	if ok, _ := l.allow(b, t0); !ok { // evicts c, now the least recently used
		t.Fatal("evicted client did not start from a full bucket")
	}
	if _, found := l.keys.Peek(c); found || l.size() != 2 {
		t.Fatalf("c still remembered, or %d clients, want 2", l.size())
	}
}

// TestClientLimiterMemoryIsBounded plays the measured attack: one client
// rotating through random IPv6 addresses, each in its own /64.
func TestClientLimiterMemoryIsBounded(t *testing.T) {
	const maxKeys, clients = 10_000, 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	l := mustLimiter(t, 60, time.Minute, maxKeys)
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var a [16]byte
	for i := range clients {
		// An odd multiplier is a bijection on uint64: distinct, scattered /64s.
		binary.BigEndian.PutUint64(a[:8], uint64(i+1)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint64(a[8:], rng.Uint64())
		if ok, _ := l.allow(clientKey(netip.AddrFrom16(a)), now); !ok {
			t.Fatalf("client %d refused: a new /64 must get a full bucket", i)
		}
		if n := l.size(); n > maxKeys {
			t.Fatalf("after %d clients: %d remembered, cap %d", i+1, n, maxKeys)
		}
		now = now.Add(10 * time.Microsecond) // 100,000 requests a second, none idle long
	}
	if n := l.size(); n != maxKeys {
		t.Fatalf("%d clients remembered, want the cap %d", n, maxKeys)
	}

	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap after %d clients with a cap of %d: %+.1f MiB (%d bytes per remembered client)",
		clients, maxKeys, float64(grown)/(1<<20), grown/maxKeys)
	if grown > 16<<20 {
		t.Errorf("heap grew by %.1f MiB, want under 16 MiB", float64(grown)/(1<<20))
	}
	runtime.KeepAlive(l)
}

// TestServerCloseLeavesNoGoroutine guards against a limiter with a sweeper
// that Close cannot stop (as golang-lru's expirable LRU has).
func TestServerCloseLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 50 {
		s, err := NewServer(Config{RateLimit: 10}, nil, prometheus.NewRegistry(), logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if after := runtime.NumGoroutine(); after-before >= 50 {
		t.Fatalf("goroutines: %d before 50 servers, %d after closing them", before, after)
	}
}
