package regtoken

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify: no input panics, and none verifies but the tokens signed
// (a mutation of a token never does).
func FuzzVerify(f *testing.F) {
	good := sign(f, newKey, grant)
	f.Add(good)
	f.Add(v1Token)
	f.Add("vr2." + newKey.ID + ".AAAA.AAAA")
	f.Add("vr2..")
	v, err := NewVerifier(newKey, oldKey)
	if err != nil {
		f.Fatal(err)
	}
	if v, err = v.WithV1(v1Key); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.VerifyFor(token, grant.Email, now)
		if err == nil && token != good && token != v1Token {
			t.Fatalf("%q verified: %v", token, c)
		}
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrSignature) &&
			!errors.Is(err, ErrExpired) && !errors.Is(err, ErrWrongEmail) {
			t.Fatalf("%q: unclassified error %v", token, err)
		}
	})
}

// FuzzSignVerify: whatever a Signer accepts verifies to the same claims, for
// that email only, and fits in a URL as it is.
func FuzzSignVerify(f *testing.F) {
	f.Add("twitter-reg1", "pQ3x_8Jm-2LkVb7Z", "player@example.com", int64(4102444800))
	f.Add("c", "r", "ю@пример.рф", int64(1))
	f.Add(strings.Repeat("c", 255), strings.Repeat("r", 255), "a@b.c", int64(1<<62))
	s, _ := NewSigner(newKey)
	v, _ := NewVerifier(oldKey, newKey)
	f.Fuzz(func(t *testing.T, code, rid, email string, exp int64) {
		tok, err := s.Sign(Grant{Code: code, RedemptionID: rid, Email: email, Expires: time.Unix(exp, 0)})
		if err != nil {
			return
		}
		if strings.Trim(tok, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
			t.Fatalf("token %q needs escaping in a URL", tok)
		}
		at := time.Unix(exp-1, 0)
		c, err := v.VerifyFor(tok, email, at)
		if err != nil || c.Code != code || c.RedemptionID != rid || c.Expires.Unix() != exp || c.KeyID != newKey.ID {
			t.Fatalf("signed %q %q %q %d, verified %v, %v", code, rid, email, exp, c, err)
		}
		if _, err := v.VerifyFor(tok, email+"x", at); !errors.Is(err, ErrWrongEmail) {
			t.Fatalf("another email: %v", err)
		}
		if _, err := v.Verify(tok, time.Unix(exp, 0)); !errors.Is(err, ErrExpired) {
			t.Fatalf("at its expiry: %v", err)
		}
	})
}
