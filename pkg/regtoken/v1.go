package regtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// verifyV1 checks a token of the earlier format, which VelvetRope mailed
// before key ids: base64url(JSON {code, email, exp}) "." base64url(
// HMAC-SHA256(key, "velvetrope-registration-v1." + first part)). It carried
// the canonical email in clear and named no key, so every v1 secret is
// tried.
func (v *Verifier) verifyV1(token string, now time.Time) (Claims, error) {
	p, sig, ok := strings.Cut(token, ".")
	if !ok || strings.Contains(sig, ".") {
		return Claims{}, ErrMalformed
	}
	if len(v.v1) == 0 {
		return Claims{}, fmt.Errorf("%w: a version 1 token, and this verifier accepts none (WithV1)", ErrUnknownKey)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	signed := false
	for _, secret := range v.v1 {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("velvetrope-registration-v1."))
		m.Write([]byte(p))
		if hmac.Equal(got, m.Sum(nil)) {
			signed = true
			break
		}
	}
	if !signed {
		return Claims{}, ErrSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c struct {
		Code    string `json:"code"`
		Email   string `json:"email"`
		Expires int64  `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Code == "" || c.Email == "" {
		return Claims{}, ErrMalformed
	}
	if now.Unix() >= c.Expires {
		return Claims{}, ErrExpired
	}
	return Claims{Version: 1, Code: c.Code, Expires: time.Unix(c.Expires, 0).UTC(), email: c.Email}, nil
}
