package mail

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Token errors.
var (
	ErrTokenMalformed = errors.New("malformed token")
	ErrTokenSignature = errors.New("token signature does not match")
	ErrTokenExpired   = errors.New("token has expired")
)

// Claims is what a registration token asserts: this person redeemed this
// code, and the game may register them until Expires.
type Claims struct {
	Code    string `json:"code"`
	Email   string `json:"email"` // canonical
	Expires int64  `json:"exp"`   // Unix seconds
}

// Signer makes and checks registration tokens: base64url(JSON claims) "."
// base64url(HMAC-SHA256 of the first part). The game's site verifies them
// with the same key and no database.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer; the key should be at least 32 random bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < 32 {
		return nil, errors.New("token key must be at least 32 bytes")
	}
	return &Signer{key: key}, nil
}

// Sign returns the token for c.
func (s *Signer) Sign(c Claims) string {
	payload, _ := json.Marshal(c)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(s.mac(p))
}

// Verify checks a token's signature and expiry at now.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	p, sig, ok := strings.Cut(token, ".")
	if !ok {
		return Claims{}, ErrTokenMalformed
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrTokenMalformed
	}
	if !hmac.Equal(got, s.mac(p)) {
		return Claims{}, ErrTokenSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Claims{}, ErrTokenMalformed
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil || c.Code == "" || c.Email == "" {
		return Claims{}, ErrTokenMalformed
	}
	if now.Unix() >= c.Expires {
		return Claims{}, ErrTokenExpired
	}
	return c, nil
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("velvetrope-registration-v1.")) // domain separation
	m.Write([]byte(payload))
	return m.Sum(nil)
}
