package redeemer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/velvetrope/velvetrope/internal/invite"
)

type redeemRequest struct {
	// Email is matched case-insensitively ("Email" works too), as
	// encoding/json does for every field.
	Email *string `json:"email"`
	// plain holds the email decodePlain found, for Email to point at.
	plain string
}

// decodePlain recognises the body clients send, {"email":"..."} with the
// key spelt in lower case and a printable ASCII address without escapes
// (see decodeJSON).
func (req *redeemRequest) decodePlain(body []byte) bool {
	s := jsonScanner{b: body}
	if !s.expect("{") || !s.expect(`"email"`) || !s.expect(":") {
		return false
	}
	email, ok := s.plainString()
	if !ok || !s.expect("}") || !s.end() {
		return false
	}
	req.plain = email
	req.Email = &req.plain
	return true
}

type redeemResponse struct {
	Code   string `json:"code"`
	Status string `json:"status"` // redeemed or already-redeemed
}

type statusResponse struct {
	Code      string `json:"code"`
	State     string `json:"state"`
	Remaining int    `json:"remaining"`
}

func (s *Server) handleRedeem() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt, _ := mediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
			s.handleForm(w, r) // the landing page without JavaScript
			return
		}
		out, err := s.redeem(w, r)
		if err != nil {
			s.metrics.result(s.problem(w, r, err).code) // one look-up in the table for both
			return
		}
		resp, status := redeemResponse{Code: r.PathValue("code"), Status: "redeemed"}, http.StatusCreated
		if out == invite.AlreadyRedeemed {
			resp.Status, status = "already-redeemed", http.StatusOK
		}
		s.metrics.result(resp.Status)
		writeJSON(w, status, noStore, resp)
	})
}

func (s *Server) redeem(w http.ResponseWriter, r *http.Request) (invite.Outcome, error) {
	code := r.PathValue("code")
	if !invite.ValidCode(code) {
		return 0, invite.ErrUnknownCode // no invitation can have this name: no storage look-up
	}
	var req redeemRequest
	if err := decodeJSON(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
		return 0, err
	}
	if req.Email == nil {
		return 0, malformed(`field "email" is required`)
	}
	email, err := invite.ParseEmail(*req.Email, *s.cfg.Folding)
	if err != nil {
		return 0, err
	}
	out, err := s.redeemer.Redeem(r.Context(), code, email, invite.PreferredLanguage(r.Header.Get("Accept-Language")))
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The client left or the server's deadline passed; the claim may
		// still land, and a retry will be answered 200.
		err = fmt.Errorf("%w: %w", invite.ErrUnavailable, err)
	}
	return out, err
}

func (s *Server) handleStatus() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := r.PathValue("code")
		// The page and the JSON status share this URL: every answer, a
		// problem included, says that caches must key it on Accept too.
		// (The page adds Accept-Language and Accept-Encoding: varyPage.)
		w.Header()[hVary] = varyAccept
		if wantsHTML(r) {
			s.renderPage(w, r, http.StatusOK, code, pageLang(r), "", "", "")
			return
		}
		if !invite.ValidCode(code) {
			s.problem(w, r, invite.ErrUnknownCode)
			return
		}
		st, err := s.redeemer.Status(code)
		if err != nil {
			s.problem(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, statusCacheControl, statusResponse{Code: st.Code, State: st.State, Remaining: st.Remaining})
	})
}

// handleHealthz says the process is alive; it never checks dependencies, so a
// database outage does not make Kubernetes restart every replica.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

// handleReadyz says whether this replica should receive traffic.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("shutting down\n"))
		return
	}
	if err := s.redeemer.Ready(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: %v\n", err)
		return
	}
	w.Write([]byte("ok\n"))
}

// statusCacheControl: the status is served from memory; a short max-age
// lets CDNs absorb a crowd.
var statusCacheControl = []string{"public, max-age=2"}

// writeJSON writes v with status; cacheControl is one of the shared header
// values (headers.go).
func writeJSON(w http.ResponseWriter, status int, cacheControl []string, v any) {
	h := w.Header()
	h[hContentType] = applicationJSON
	h[hCacheControl] = cacheControl
	h[hContentTypeOptions] = nosniff
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
