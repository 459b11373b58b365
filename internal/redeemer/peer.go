package redeemer

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// The routes of the peer port, which only the fleet's own pods reach:
// PeerClaimsPath takes a claim that another replica of the fleet hands to
// the replica writing its code's claims (internal/peers), and
// PeerOccupantsPath tells what the writer knows a code's slots hold.
const (
	PeerClaimsPath    = "/peer/v1/claims"
	PeerOccupantsPath = "/peer/v1/occupants"
)

// peerClaim is a handed-over claim. The email travels as the player typed
// it and is parsed again by the writer, with its own folding rules.
type peerClaim struct {
	Code      string `json:"code"`
	Email     string `json:"email"`
	Lang      string `json:"lang"`
	TimeoutMS int64  `json:"timeoutMs"` // what is left of the redemption's deadline
}

// peerAnswer is the writer's answer: an outcome, or the problem code of the
// error table with the error's text (and, for storage failures, its reason).
type peerAnswer struct {
	Outcome invite.Outcome `json:"outcome,omitempty"`
	Problem string         `json:"problem,omitempty"`
	Detail  string         `json:"detail,omitempty"`
	Reason  string         `json:"reason,omitempty"`
}

// occupantsQuery asks what a code's slots hold; occupantsAnswer is
// Known false when the writer does not know for certain.
type occupantsQuery struct {
	Code string `json:"code"`
}

type occupantsAnswer struct {
	Known     bool              `json:"known"`
	Occupants []invite.Occupant `json:"occupants,omitempty"`
}

// Local is this replica's side of the peer port (claim.Service): a
// handed-over claim is written here and never handed on.
type Local interface {
	RedeemHere(ctx context.Context, code string, email invite.Email, lang string) (invite.Outcome, error)
	OccupantsHere(code string) ([]invite.Occupant, bool)
}

// PeerToken is what replicas of a fleet show each other on the peer port:
// an HMAC of a secret every replica of the fleet already holds (cmd/redeemer
// uses the MongoDB connection string, which opens far more than this port
// does), so that whoever reaches a pod's IP without it can neither write
// claims past the players' rate limit nor read a code's holders.
func PeerToken(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("velvetrope peer port v1"))
	return "Bearer " + hex.EncodeToString(m.Sum(nil))
}

// NewPeerHandler serves the peer port to requests that carry token
// (PeerToken). A claim is answered with 200 and a peerAnswer whatever its
// fate; anything else is a 4xx, which the sender takes as "no answer" and
// writes the claim itself.
func NewPeerHandler(cfg Config, r Local, token string, log logr.Logger) http.Handler {
	folding := invite.DefaultFolding
	if cfg.Folding != nil {
		folding = *cfg.Folding
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PeerOccupantsPath, func(w http.ResponseWriter, req *http.Request) {
		var q occupantsQuery
		if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 4096)).Decode(&q); err != nil {
			http.Error(w, "malformed query", http.StatusBadRequest)
			return
		}
		var a occupantsAnswer
		a.Occupants, a.Known = r.OccupantsHere(q.Code)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a)
	})
	mux.HandleFunc("POST "+PeerClaimsPath, func(w http.ResponseWriter, req *http.Request) {
		var c peerClaim
		if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 4096)).Decode(&c); err != nil || c.TimeoutMS <= 0 {
			http.Error(w, "malformed claim", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), time.Duration(c.TimeoutMS)*time.Millisecond)
		defer cancel()
		var a peerAnswer
		email, err := invite.ParseEmail(c.Email, folding)
		if err == nil {
			a.Outcome, err = r.RedeemHere(ctx, c.Code, email, c.Lang)
		}
		if err != nil {
			kind, found := kindOf(err)
			if !found {
				log.Error(err, "Handed-over claim failed", "code", c.Code)
			}
			a = peerAnswer{Problem: kind.code, Detail: err.Error(), Reason: invite.UnavailableReason(err)}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if subtle.ConstantTimeCompare([]byte(req.Header.Get("Authorization")), []byte(token)) != 1 {
			log.V(1).Info("Refused a peer request without the fleet's token", "remote", req.RemoteAddr)
			http.Error(w, "not a replica of this fleet", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, req)
	})
}

// ConfigurePeerServer makes s speak what PeerClient speaks: unencrypted
// HTTP/2 (HTTP/1.1 too, for curl), with room for a crowd's claims on one
// connection.
func ConfigurePeerServer(s *http.Server) {
	s.Protocols = new(http.Protocols)
	s.Protocols.SetHTTP1(true)
	s.Protocols.SetUnencryptedHTTP2(true)
	s.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1024}
}

// PeerClient hands claims to other replicas' peer ports, over unencrypted
// HTTP/2: one connection per peer carries a crowd's claims.
type PeerClient struct {
	client *http.Client
	token  string
}

// NewPeerClient returns a client that shows token (PeerToken), gives up
// dialing a peer after a second and notices a dead connection within a few
// seconds, so a vanished replica costs its peers a short wait, then a write
// of their own.
func NewPeerClient(token string) *PeerClient {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 15 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		Protocols:           new(http.Protocols),
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 2 * time.Second, PingTimeout: 2 * time.Second},
	}
	t.Protocols.SetUnencryptedHTTP2(true)
	return &PeerClient{client: &http.Client{Transport: t}, token: token}
}

// Redeem hands the claim to the replica at addr (peers.Client). answered is
// false when no answer came: then the caller writes the claim itself, which
// storage's unique keys make safe whatever the peer did with it.
func (p *PeerClient) Redeem(ctx context.Context, addr, code string, email invite.Email, lang string) (out invite.Outcome, err error, answered bool) {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return 0, nil, false
	}
	var a peerAnswer
	if !p.post(ctx, addr+PeerClaimsPath, peerClaim{Code: code, Email: email.Raw, Lang: lang, TimeoutMS: timeout.Milliseconds() + 1}, &a, 64<<10) {
		return 0, nil, false
	}
	if a.Problem == "" {
		return a.Outcome, nil, true
	}
	return 0, a.err(), true
}

// Occupants asks the replica at addr what code's slots hold (peers.Client).
func (p *PeerClient) Occupants(ctx context.Context, addr, code string) ([]invite.Occupant, bool) {
	var a occupantsAnswer
	if !p.post(ctx, addr+PeerOccupantsPath, occupantsQuery{Code: code}, &a, 1<<20) || !a.Known {
		return nil, false
	}
	return a.Occupants, true
}

// post sends q to url's peer and decodes its 200 answer into a; false when
// no such answer came.
func (p *PeerClient) post(ctx context.Context, url string, q, a any, limit int64) bool {
	body, _ := json.Marshal(q)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", p.token)
	resp, err := p.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(a) == nil
}

// err rebuilds the writer's error, so this replica answers it through the
// same row of the error table as the writer would have.
func (a peerAnswer) err() error {
	for _, k := range problemTable {
		if k.code != a.Problem {
			continue
		}
		if k.err == invite.ErrUnavailable {
			return &invite.UnavailableError{Reason: a.Reason, Err: errors.New(a.Detail)}
		}
		return peerError{k.err, a.Detail}
	}
	return errors.New("peer: " + a.Detail) // internal: a 500, its text logged
}

// peerError is an error of the table as a peer said it.
type peerError struct {
	err  error
	text string
}

func (e peerError) Error() string { return e.text }
func (e peerError) Unwrap() error { return e.err }
