// Package staff is the staff's way to the redemptions of a code without
// MongoDB credentials: an HTTP API, served by the operator's manager as the
// aggregated API staff.velvetrope.io/v1alpha1, so kubectl reaches it through
// the API server, which authenticates the caller; the manager authorises
// each request with a SubjectAccessReview on the Invitation's subresource
// (cmd/manager wires both). This package holds only the handlers: it imports
// the domain, never the MongoDB driver nor Kubernetes clients.
//
//	GET  /apis/staff.velvetrope.io/v1alpha1/namespaces/{ns}/invitations/{name}/redemptions   (JSON, or CSV with Accept: text/csv)
//	POST /apis/staff.velvetrope.io/v1alpha1/namespaces/{ns}/invitations/{name}/revocations   {"email": "..."}
package staff

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Group and Version of the API.
const (
	Group   = "staff.velvetrope.io"
	Version = "v1alpha1"
	prefix  = "/apis/" + Group + "/" + Version
)

// Store is what the staff API needs from MongoDB.
type Store interface {
	Redemptions(ctx context.Context, code string) ([]invite.Redemption, error)
	// Revoke deletes the redemption of canonicalEmail of code.
	Revoke(ctx context.Context, code, canonicalEmail string) (invite.Redemption, error)
}

// Invitations are the Invitation objects the API is about.
type Invitations interface {
	// Code is the code of namespace/name; ErrNotFound when there is none.
	Code(ctx context.Context, namespace, name string) (string, error)
	// Revoked records a revocation on the Invitation (an Event): note
	// holds only a hash of the email.
	Revoked(ctx context.Context, namespace, name, note string)
}

// ErrNotFound is the answer of Invitations.Code for an unknown Invitation.
var ErrNotFound = errors.New("not found")

// Handler serves the API. User names the caller of a request (the API
// server's authentication put it there), for the log and the Event.
type Handler struct {
	Store       Store
	Invitations Invitations
	User        func(*http.Request) string
	Log         logr.Logger
	mux         *http.ServeMux
}

// NewHandler returns the API's handler.
func NewHandler(h Handler) http.Handler {
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("GET "+prefix, h.discovery)
	h.mux.HandleFunc("GET "+prefix+"/namespaces/{namespace}/invitations/{name}/redemptions", h.list)
	h.mux.HandleFunc("POST "+prefix+"/namespaces/{namespace}/invitations/{name}/revocations", h.revoke)
	for path, allow := range map[string]string{"/redemptions": "GET", "/revocations": "POST"} {
		h.mux.HandleFunc(prefix+"/namespaces/{namespace}/invitations/{name}"+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			status(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not allowed here; "+allow+" is")
		})
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		status(w, http.StatusNotFound, "NotFound", "no such path in "+Group+"/"+Version)
	})
	return h.mux
}

// Redemption is one person's redemption, as staff see it.
type Redemption struct {
	Email      string    `json:"email"` // as the player typed it
	RedeemedAt time.Time `json:"redeemedAt"`
	Language   string    `json:"language,omitempty"`
	Mail       string    `json:"mail"` // pending, sent or failed
}

// RedemptionList is the answer of GET …/redemptions.
type RedemptionList struct {
	Kind        string       `json:"kind"`
	APIVersion  string       `json:"apiVersion"`
	Code        string       `json:"code"`
	Redemptions []Redemption `json:"redemptions"`
}

// Revocation is the body of POST …/revocations, and its answer.
type Revocation struct {
	Email      string    `json:"email"`
	RedeemedAt time.Time `json:"redeemedAt,omitzero"`
}

// discovery lists the resources, as an aggregated API must for the API
// server to call it available (and for kubectl's discovery).
func (h Handler) discovery(w http.ResponseWriter, _ *http.Request) {
	resource := func(name string, verbs ...string) map[string]any {
		return map[string]any{"name": name, "singularName": "", "namespaced": true, "kind": "Invitation", "verbs": verbs}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": Group + "/" + Version,
		"resources": []any{resource("invitations/redemptions", "get"), resource("invitations/revocations", "create")},
	})
}

func (h Handler) list(w http.ResponseWriter, r *http.Request) {
	code, ok := h.code(w, r)
	if !ok {
		return
	}
	rs, err := h.Store.Redemptions(r.Context(), code)
	if err != nil {
		h.Log.Error(err, "Listing redemptions", "code", code)
		status(w, http.StatusServiceUnavailable, "ServiceUnavailable", "MongoDB: "+err.Error())
		return
	}
	list := RedemptionList{Kind: "RedemptionList", APIVersion: Group + "/" + Version, Code: code, Redemptions: make([]Redemption, len(rs))}
	for i, x := range rs {
		list.Redemptions[i] = Redemption{Email: x.Email.Raw, RedeemedAt: x.RedeemedAt.UTC(), Language: x.Lang, Mail: string(x.Mail)}
	}
	if !strings.Contains(r.Header.Get("Accept"), "text/csv") {
		writeJSON(w, http.StatusOK, list)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", code+"-redemptions.csv"))
	c := csv.NewWriter(w)
	c.Write([]string{"email", "redeemed_at", "language", "mail"})
	for _, x := range list.Redemptions {
		c.Write([]string{csvSafe(x.Email), x.RedeemedAt.Format(time.RFC3339), x.Language, x.Mail})
	}
	c.Flush()
}

// csvSafe keeps a spreadsheet from reading a cell as a formula (an email's
// local part may start with =, +, - or @).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@", rune(s[0])) {
		return "'" + s
	}
	return s
}

func (h Handler) revoke(w http.ResponseWriter, r *http.Request) {
	code, ok := h.code(w, r)
	if !ok {
		return
	}
	var body Revocation
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		status(w, http.StatusBadRequest, "BadRequest", `want {"email": "..."}: `+err.Error())
		return
	}
	email, err := invite.ParseEmail(body.Email, invite.DefaultFolding)
	if err != nil {
		status(w, http.StatusBadRequest, "BadRequest", "email: "+err.Error())
		return
	}
	revoked, err := h.Store.Revoke(r.Context(), code, email.Canonical)
	switch {
	case errors.Is(err, invite.ErrNotRedeemed):
		status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("no redemption of %s by that email", code))
		return
	case err != nil:
		h.Log.Error(err, "Revoking a redemption", "code", code)
		status(w, http.StatusServiceUnavailable, "ServiceUnavailable", "MongoDB: "+err.Error())
		return
	}
	ns, name, hash, user := r.PathValue("namespace"), r.PathValue("name"), EmailHash(email.Canonical), h.User(r)
	h.Log.Info("Revoked a redemption", "namespace", ns, "invitation", name, "code", code, "emailSHA256", hash, "user", user)
	h.Invitations.Revoked(r.Context(), ns, name, fmt.Sprintf("%s revoked a redemption of %s (email sha256 %s): the place is free again", user, code, hash))
	writeJSON(w, http.StatusOK, Revocation{Email: revoked.Email.Raw, RedeemedAt: revoked.RedeemedAt.UTC()})
}

// EmailHash names a person in logs and events without their email: the
// first 16 hex digits of the SHA-256 of the canonical email.
func EmailHash(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return hex.EncodeToString(sum[:8])
}

// code resolves the request's Invitation, answering 404 for an unknown one.
func (h Handler) code(w http.ResponseWriter, r *http.Request) (string, bool) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	code, err := h.Invitations.Code(r.Context(), ns, name)
	switch {
	case errors.Is(err, ErrNotFound):
		status(w, http.StatusNotFound, "NotFound", fmt.Sprintf("invitations.velvetrope.io %q not found in namespace %q", name, ns))
		return "", false
	case err != nil:
		status(w, http.StatusInternalServerError, "InternalError", err.Error())
		return "", false
	}
	return code, true
}

// status answers a Kubernetes Status, which kubectl and client-go print.
func status(w http.ResponseWriter, code int, reason, message string) {
	writeJSON(w, code, map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
