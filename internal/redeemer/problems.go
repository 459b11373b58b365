package redeemer

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// HTTP-level errors; domain errors come from internal/invite.
var (
	errNotFound             = errors.New("no such route")
	errMethodNotAllowed     = errors.New("method not allowed")
	errUnsupportedMediaType = errors.New("content type must be application/json")
	errBodyTooLarge         = errors.New("request body too large")
	errMalformed            = errors.New("malformed request")
	errRateLimited          = errors.New("rate limited")
	errCrossOrigin          = errors.New("cross-origin form post")
)

func malformed(detail string) error { return detailed{errMalformed, detail} }

// detailed carries a message that is safe to show the client.
type detailed struct {
	error
	detail string
}

func (d detailed) Unwrap() error { return d.error }

// problemKind is one row of the error table.
type problemKind struct {
	err        error
	status     int
	code       string // stable, machine-readable; also the last segment of the type URI
	title      string
	retryAfter int // seconds; 0 for none
}

// problemTable maps every error a client can see to its status and problem
// type (RFC 9457). It is the only list of problem codes: the landing page's
// messages (resultOf) and docs/api.md are tested equal to it (problems_test.go).
var problemTable = []problemKind{
	{errMalformed, http.StatusBadRequest, "malformed-request", "The request body is not what this endpoint accepts", 0},
	{invite.ErrInvalidEmail, http.StatusBadRequest, "invalid-email", "The email address is not valid", 0},
	{errNotFound, http.StatusNotFound, "not-found", "There is nothing here", 0},
	{invite.ErrUnknownCode, http.StatusNotFound, "unknown-invitation", "There is no invitation with this code", 0},
	{errCrossOrigin, http.StatusForbidden, "cross-origin", "Forms may only be posted from this site", 0},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, "method-not-allowed", "This method is not allowed here", 0},
	{invite.ErrUsedElsewhere, http.StatusConflict, "email-used-elsewhere", "This email has already redeemed another invitation", 0},
	{invite.ErrExhausted, http.StatusGone, "invitation-exhausted", "This invitation has been used up", 0},
	{invite.ErrExpired, http.StatusGone, "invitation-expired", "This invitation has expired", 0},
	{invite.ErrRevoked, http.StatusGone, "invitation-revoked", "This invitation was withdrawn", 0},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "body-too-large", "The request body is too large", 0},
	{errUnsupportedMediaType, http.StatusUnsupportedMediaType, "unsupported-media-type", "The request body must be application/json", 0},
	{invite.ErrPaused, http.StatusLocked, "invitation-paused", "This invitation is paused for now; try again later", 0},
	{errRateLimited, http.StatusTooManyRequests, "rate-limited", "Too many requests from this address", 0},
	{invite.ErrBusy, http.StatusServiceUnavailable, "busy", "The service is busy; try again shortly", 1},
	{invite.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "The service is temporarily unavailable; try again shortly", 2},
}

var internalProblem = problemKind{nil, http.StatusInternalServerError, "internal", "Something went wrong on our side", 0}

// kindOf finds err's row of the table: the first that matches, or the
// generic 500 row (found false). Every classification of an error uses it.
func kindOf(err error) (problemKind, bool) {
	for _, k := range problemTable {
		// Most errors arrive as they were declared (an exhausted code's
		// crowd gets invite.ErrExhausted by the thousand): the identity
		// spares errors.Is's reflection. The table's errors are pointers,
		// so the comparison cannot panic.
		if err == k.err {
			return k, true
		}
	}
	for _, k := range problemTable {
		if errors.Is(err, k.err) {
			return k, true
		}
	}
	return internalProblem, false
}

// problemCodes and problemStatuses list the table's codes and statuses.
func problemCodes() []string {
	codes := make([]string, len(problemTable))
	for i, k := range problemTable {
		codes[i] = k.code
	}
	return codes
}

func problemStatuses() []int {
	statuses := make([]int, len(problemTable))
	for i, k := range problemTable {
		statuses[i] = k.status
	}
	return statuses
}

// ProblemTypeBase prefixes every problem type URI.
const ProblemTypeBase = "https://velvetrope.io/problems/"

type problemBody struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail,omitempty"`
}

// encode is the body written for k with detail: the problem document,
// encoded as json.Encoder does (a newline after it).
func (k problemKind) encode(detail string) []byte {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(problemBody{Type: ProblemTypeBase + k.code, Title: k.title, Status: k.status, Code: k.code, Detail: detail})
	return b.Bytes()
}

// plainBodies holds every row's body without a detail, by code, encoded
// once: most problems carry none, and an exhausted code answers a crowd with
// the same 410 over and over.
var plainBodies = func() map[string][]byte {
	bodies := map[string][]byte{internalProblem.code: internalProblem.encode("")}
	for _, k := range problemTable {
		bodies[k.code] = k.encode("")
	}
	return bodies
}()

// detailOf is what a 400 tells the client about its request: a malformed
// body's detail, or why the email is not valid. (It is apart from problem
// because errors.As's target escapes to the heap, and most problems, such as
// an exhausted code's 410, have no detail to look for.)
func detailOf(err error) string {
	var d detailed
	if errors.As(err, &d) {
		return d.detail
	}
	if errors.Is(err, invite.ErrInvalidEmail) {
		return strings.TrimPrefix(err.Error(), invite.ErrInvalidEmail.Error()+": ")
	}
	return ""
}

// problem writes err as application/problem+json and returns its row of the
// table, for callers that count it. Unknown errors become a generic 500;
// their text goes to the log only.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, err error) problemKind {
	kind, found := kindOf(err)
	var detail string
	switch {
	case !found:
		s.log.Error(err, "Request failed", "method", r.Method, "path", r.URL.Path)
	case kind.status >= 500:
		if log := s.log.V(1); log.Enabled() { // a crowd can meet 503s by the thousand
			log.Info("Request refused", "reason", err.Error(), "path", r.URL.Path)
		}
	case kind.status == http.StatusBadRequest:
		detail = detailOf(err)
	}
	body := plainBodies[kind.code]
	if detail != "" {
		body = kind.encode(detail)
	}
	h := w.Header()
	if kind.retryAfter > 0 && h.Get("Retry-After") == "" {
		h.Set("Retry-After", strconv.Itoa(kind.retryAfter))
	}
	h[hContentType] = problemJSON
	h[hCacheControl] = noStore
	h[hContentTypeOptions] = nosniff
	w.WriteHeader(kind.status)
	w.Write(body)
	return kind
}

// methodNotAllowed answers other methods on a known path with 405 and Allow.
func (s *Server) methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		s.problem(w, r, errMethodNotAllowed)
	})
}
