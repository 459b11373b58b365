// Package regtoken mints and verifies VelvetRope's registration tokens: the
// token in the link of every instructions email (…/register?token=…), which
// the game's registration backend verifies with no database, holding only
// the key the redeemers sign with (MAIL_TOKEN_KEY).
//
// A token asserts "whoever redeemed this code, in this redemption, may
// register until this time" and is bound to the player's canonical email
// without carrying it: it holds a keyed MAC of the address, so the backend
// checks "this token was issued for this email" when the player registers
// with it (VerifyFor), while the link leaks no address into access logs,
// browser histories, Referer headers or mail scanners.
//
// Tokens name their key by id, so keys rotate: a Verifier holds several
// keys, a Signer signs with one. The format, byte by byte, and what stays
// the game's job (accepting each redemption once, creating the account) are
// in docs/registration.md.
//
// The package imports the standard library only, so any Go backend can
// import it; it must never import VelvetRope's internal packages.
package regtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Verification errors. Every error Verify and VerifyFor return wraps one.
var (
	ErrMalformed  = errors.New("malformed registration token")
	ErrUnknownKey = errors.New("registration token signed with an unknown key")
	ErrSignature  = errors.New("registration token signature does not match")
	ErrExpired    = errors.New("registration token has expired")
	ErrWrongEmail = errors.New("registration token was issued for another email")
)

// MinKeySize is the shortest secret accepted, in bytes.
const MinKeySize = 32

// Sizes and labels of the format (docs/registration.md).
const (
	prefix      = "vr2."
	maxKeyID    = 32
	maxField    = 255  // code and redemption id, bytes
	bindingSize = 16   // truncated HMAC-SHA256 of the canonical email
	tagSize     = 32   // HMAC-SHA256 of the signed part
	maxToken    = 1024 // longer input is refused before any work

	labelTag     = "velvetrope-registration-v2\x00"
	labelEmail   = "velvetrope-registration-v2-email\x00"
	labelKeyID   = "velvetrope-registration-key-id\x00"
	fixedBodyLen = 8 + 1 + 1 + bindingSize // expiry, two lengths, binding
)

var b64 = base64.RawURLEncoding.Strict()

// Key is a secret and the id tokens name it by.
type Key struct {
	ID     string // 1 to 32 characters of A-Z a-z 0-9 - _
	Secret []byte // at least MinKeySize bytes
}

// NewKey returns secret with its derived id, KeyID(secret): the id
// VelvetRope's redeemers put in the tokens they sign with MAIL_TOKEN_KEY.
func NewKey(secret []byte) (Key, error) {
	k := Key{ID: KeyID(secret), Secret: secret}
	return k, k.check()
}

// KeyID derives a key's id from its secret: the first 6 bytes of
// SHA-256("velvetrope-registration-key-id\x00" || secret), base64url (8
// characters). Rotating the secret changes the id, so nobody has to name
// keys; the id tells no more about the secret than any token's MAC does.
func KeyID(secret []byte) string {
	h := sha256.New()
	h.Write([]byte(labelKeyID))
	h.Write(secret)
	return b64.EncodeToString(h.Sum(nil)[:6])
}

func (k Key) check() error {
	if len(k.Secret) < MinKeySize {
		return fmt.Errorf("token key must be at least %d bytes, got %d", MinKeySize, len(k.Secret))
	}
	if !validKeyID(k.ID) {
		return fmt.Errorf("token key id %q: want 1 to %d of A-Z a-z 0-9 - _", k.ID, maxKeyID)
	}
	return nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyID {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Grant is what a token asserts, as the signer states it.
type Grant struct {
	Code         string // the invitation code redeemed, 1 to 255 bytes
	RedemptionID string // unique per redemption, 1 to 255 bytes
	// Email is the canonical email the code was redeemed with. It is bound
	// to the token (a MAC of it), not carried in it.
	Email   string
	Expires time.Time // whole seconds; the token is valid before it
}

// Claims is what a verified token asserts.
type Claims struct {
	Version      int    // 2; 1 for a token of the earlier format (Verifier.WithV1)
	KeyID        string // the key that signed it; empty for version 1
	Code         string
	RedemptionID string // empty for version 1, which had none
	Expires      time.Time

	binding []byte // version 2: the MAC of the canonical email
	email   string // version 1: the canonical email, which it carried in clear
}

// String leaves the email binding out, so logging Claims logs no address.
func (c Claims) String() string {
	return fmt.Sprintf("regtoken.Claims{Version: %d, KeyID: %q, Code: %q, RedemptionID: %q, Expires: %s}",
		c.Version, c.KeyID, c.Code, c.RedemptionID, c.Expires.Format(time.RFC3339))
}

// Signer mints tokens with one key.
type Signer struct {
	key Key
}

// NewSigner returns a Signer for k.
func NewSigner(k Key) (*Signer, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return &Signer{key: Key{ID: k.ID, Secret: append([]byte(nil), k.Secret...)}}, nil
}

// KeyID is the id of the key s signs with.
func (s *Signer) KeyID() string { return s.key.ID }

// Sign returns the token for g.
func (s *Signer) Sign(g Grant) (string, error) {
	switch {
	case g.Code == "" || len(g.Code) > maxField || !utf8.ValidString(g.Code):
		return "", fmt.Errorf("token code: want 1 to %d bytes of UTF-8", maxField)
	case g.RedemptionID == "" || len(g.RedemptionID) > maxField || !utf8.ValidString(g.RedemptionID):
		return "", fmt.Errorf("token redemption id: want 1 to %d bytes of UTF-8", maxField)
	case g.Email == "":
		return "", errors.New("token email: empty")
	case g.Expires.Unix() <= 0:
		return "", errors.New("token expiry: want a time after 1970")
	}
	body := make([]byte, 0, fixedBodyLen+len(g.Code)+len(g.RedemptionID))
	body = binary.BigEndian.AppendUint64(body, uint64(g.Expires.Unix()))
	body = append(body, byte(len(g.Code)))
	body = append(body, g.Code...)
	body = append(body, byte(len(g.RedemptionID)))
	body = append(body, g.RedemptionID...)
	body = append(body, emailBinding(s.key.Secret, g.Email)...)
	signed := prefix + s.key.ID + "." + b64.EncodeToString(body)
	return signed + "." + b64.EncodeToString(tag(s.key.Secret, signed)), nil
}

// Verifier checks tokens against the keys it holds, by id.
type Verifier struct {
	keys map[string][]byte
	v1   [][]byte
}

// NewVerifier returns a Verifier accepting tokens signed with any of keys:
// during a rotation, the new key and the old one for as long as links
// signed with it live (the redeemers' --mail-token-ttl).
func NewVerifier(keys ...Key) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("token verifier needs at least one key")
	}
	v := &Verifier{keys: make(map[string][]byte, len(keys))}
	for _, k := range keys {
		if err := k.check(); err != nil {
			return nil, err
		}
		if _, dup := v.keys[k.ID]; dup {
			return nil, fmt.Errorf("token key id %q given twice", k.ID)
		}
		v.keys[k.ID] = append([]byte(nil), k.Secret...)
	}
	return v, nil
}

// WithV1 returns a Verifier that also accepts tokens of the earlier format
// (version 1, mailed by VelvetRope before key ids), signed with one of
// secrets. They carry no key id and no redemption id; keep accepting them
// only as long as such links live after the upgrade.
func (v *Verifier) WithV1(secrets ...[]byte) (*Verifier, error) {
	out := &Verifier{keys: v.keys, v1: append([][]byte(nil), v.v1...)}
	for _, s := range secrets {
		if len(s) < MinKeySize {
			return nil, fmt.Errorf("token key must be at least %d bytes, got %d", MinKeySize, len(s))
		}
		out.v1 = append(out.v1, append([]byte(nil), s...))
	}
	return out, nil
}

// Verify checks a token's signature and expiry at now and returns what it
// asserts. It cannot tell whom the token was issued for: when the player
// registers with an email, use VerifyFor.
func (v *Verifier) Verify(token string, now time.Time) (Claims, error) {
	if len(token) > maxToken {
		return Claims{}, ErrMalformed
	}
	rest, ok := strings.CutPrefix(token, prefix)
	if !ok {
		return v.verifyV1(token, now)
	}
	kid, rest, ok1 := strings.Cut(rest, ".")
	body64, tag64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !validKeyID(kid) {
		return Claims{}, ErrMalformed
	}
	secret, ok := v.keys[kid]
	if !ok {
		return Claims{}, fmt.Errorf("%w: key id %q", ErrUnknownKey, kid)
	}
	got, err := b64.DecodeString(tag64)
	if err != nil || len(got) != tagSize {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(got, tag(secret, token[:len(token)-len(tag64)-1])) {
		return Claims{}, ErrSignature
	}
	body, err := b64.DecodeString(body64)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	c, ok := parseBody(body)
	if !ok {
		return Claims{}, ErrMalformed
	}
	c.Version, c.KeyID = 2, kid
	if !now.Before(c.Expires) {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// VerifyFor is Verify, and then checks that the token was issued for email,
// which must be in VelvetRope's canonical form (docs/registration.md).
func (v *Verifier) VerifyFor(token, email string, now time.Time) (Claims, error) {
	c, err := v.Verify(token, now)
	if err != nil {
		return Claims{}, err
	}
	var match bool
	if c.Version == 1 {
		match = c.email == email
	} else {
		match = hmac.Equal(c.binding, emailBinding(v.keys[c.KeyID], email))
	}
	if !match {
		return Claims{}, ErrWrongEmail
	}
	return c, nil
}

// parseBody reads expiry, code, redemption id and binding; the body must be
// exactly that long.
func parseBody(b []byte) (Claims, bool) {
	if len(b) < fixedBodyLen {
		return Claims{}, false
	}
	exp := binary.BigEndian.Uint64(b)
	b = b[8:]
	code, b, ok := lengthPrefixed(b)
	if !ok {
		return Claims{}, false
	}
	rid, b, ok := lengthPrefixed(b)
	if !ok || len(b) != bindingSize || exp > math.MaxInt64 {
		return Claims{}, false
	}
	return Claims{Code: code, RedemptionID: rid, Expires: time.Unix(int64(exp), 0).UTC(), binding: b}, true
}

func lengthPrefixed(b []byte) (field string, rest []byte, ok bool) {
	if len(b) < 1 || b[0] == 0 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	field = string(b[1 : 1+n])
	return field, b[1+n:], utf8.ValidString(field)
}

func tag(secret []byte, signed string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(labelTag))
	m.Write([]byte(signed))
	return m.Sum(nil)
}

func emailBinding(secret []byte, email string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(labelEmail))
	m.Write([]byte(email))
	return m.Sum(nil)[:bindingSize]
}
