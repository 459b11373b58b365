package redeemer

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// rateLimit gives each client RateLimit requests per RateInterval (see
// clientKey for what a client is). Players behind one carrier NAT share an
// IP, so keep the limit generous: it is there to stop scripts, not people.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	if s.limiter == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, wait := s.limiter.allow(clientKey(s.clientIP(r)), time.Now()); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second))))
			s.problem(w, r, errRateLimited)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientKey is what the rate limit counts by: an IPv4 address, or the /64 of
// an IPv6 address. One IPv6 subscriber or host gets a whole /64 (RFC 6177),
// so keying on the full address would hand a single client 2^64 buckets.
// IPv4-mapped IPv6 addresses count as the IPv4 address; an IPv6 zone is
// dropped.
func clientKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64) // fails only for the zero Addr, whose zero Prefix is a key too
	return p
}

// sweepPerCall bounds how many idle buckets one request forgets, so after a
// flood of one-off clients no single request pays for clearing them all.
// Above 1, the idle ones still shrink faster than new ones arrive.
const sweepPerCall = 8

// clientLimiter is a token bucket per client (burst limit, refilled at limit
// per interval), with bounded memory:
//
//   - a bucket idle for one interval is full again, so it is forgotten: the
//     least recently used buckets are checked on every call, no goroutine;
//   - at most keys buckets are kept; a new client beyond that evicts the least
//     recently used one, which starts from a full bucket if it comes back.
//     A client rotating addresses already gets a fresh bucket per new
//     address, so eviction gives it nothing more, and it costs at most keys
//     buckets of memory instead of one per address.
//
// One mutex guards the LRU and the buckets; a call holds it for a map lookup
// and some arithmetic. (golang-lru's expirable LRU would expire entries by
// itself, but its sweeper goroutine cannot be stopped, hashicorp/golang-lru
// issue 159, and Get does not renew an entry's TTL.)
type clientLimiter struct {
	limit    rate.Limit
	burst    int
	interval time.Duration

	mu   sync.Mutex
	keys *simplelru.LRU[netip.Prefix, bucket]
}

type bucket struct {
	tokens *rate.Limiter
	seen   time.Time // last call, to forget the bucket once it is full again
}

func newClientLimiter(limit uint64, interval time.Duration, keys int) (*clientLimiter, error) {
	lru, err := simplelru.NewLRU[netip.Prefix, bucket](keys, nil)
	if err != nil {
		return nil, err
	}
	return &clientLimiter{
		limit:    rate.Limit(float64(limit) / interval.Seconds()),
		burst:    int(min(limit, math.MaxInt)),
		interval: interval,
		keys:     lru,
	}, nil
}

// allow takes a token from key's bucket at now. Without one, it says how long
// until the bucket holds one again.
func (l *clientLimiter) allow(key netip.Prefix, now time.Time) (ok bool, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range sweepPerCall {
		_, b, found := l.keys.GetOldest()
		if !found || now.Sub(b.seen) < l.interval {
			break
		}
		l.keys.RemoveOldest()
	}
	b, found := l.keys.Peek(key)
	if !found {
		b.tokens = rate.NewLimiter(l.limit, l.burst)
	}
	b.seen = now
	l.keys.Add(key, b) // marks key most recently used; a new key beyond the cap evicts the least
	if b.tokens.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens.TokensAt(now)) / float64(l.limit) * float64(time.Second))
}

// size is the number of clients remembered.
func (l *clientLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.keys.Len()
}

// clientIP is the peer address, or, when the peer is a trusted proxy, the
// right-most X-Forwarded-For entry that is not itself a trusted proxy (entries
// to its left were written by the client and can be forged).
func (s *Server) clientIP(r *http.Request) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := peer.Addr().Unmap()
	if !s.trusted(ip) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		ip = hop.Unmap()
		if !s.trusted(ip) {
			break
		}
	}
	return ip
}

func (s *Server) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
