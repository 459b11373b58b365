package redeemer

import "net/http"

// routes lists every route the redeemer serves to players and probes.
// GET /metrics is not one of them: it has a listener of its own
// (MetricsHandler), so scrapes never share the players' port.
func (s *Server) routes() {
	s.mux.Handle("POST /invitations/{code}", s.instrument("redeem", s.rateLimit(s.handleRedeem())))
	s.mux.Handle("GET /invitations/{code}", s.instrument("status", s.handleStatus()))
	s.mux.Handle("GET /invitations/{code}/result", s.instrument("page", http.HandlerFunc(s.handleResult)))
	s.mux.Handle("/invitations/{code}", s.instrument("other", s.methodNotAllowed("GET, HEAD, POST")))
	s.mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.mux.HandleFunc("GET /readyz", s.handleReadyz)
	s.mux.Handle("/", s.instrument("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.problem(w, r, errNotFound)
	})))
}
