package redeemer

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// rateLimit gives each client IP RateLimit requests per RateInterval. Players
// behind one carrier NAT share an IP, so keep the limit generous: it is there
// to stop scripts, not people.
func (s *Server) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _, reset, ok, err := s.limiter.Take(r.Context(), s.clientIP(r).String())
		if err == nil && !ok {
			wait := time.Until(time.Unix(0, int64(reset)))
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int((wait+time.Second-1)/time.Second))))
			s.problem(w, r, errRateLimited)
			return
		}
		next.ServeHTTP(w, r)
	})
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
