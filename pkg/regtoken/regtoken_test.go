package regtoken

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	now     = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	oldKey  = mustKey("old-key-0123456789abcdef0123456789")
	newKey  = mustKey("new-key-0123456789abcdef0123456789")
	grant   = Grant{Code: "twitter-reg1", RedemptionID: "pQ3x_8Jm-2LkVb7Z", Email: "player@example.com", Expires: now.Add(time.Hour)}
	v1Key   = []byte("legacy-v1-key-0123456789abcdef0123")
	v1Token = "eyJjb2RlIjoidHdpdHRlci1yZWcxIiwiZW1haWwiOiJwbGF5ZXJAZXhhbXBsZS5jb20iLCJleHAiOjQxMDI0NDQ4MDB9.M4N_0MicfiZysslZmuQptynvRBjqVmwNO1kKP-sZHFY"
	// v1Expired expired on 2026-01-01. Both were minted by the code this
	// package replaced (internal/mail/token.go).
	v1Expired = "eyJjb2RlIjoidHdpdHRlci1yZWcxIiwiZW1haWwiOiJwbGF5ZXJAZXhhbXBsZS5jb20iLCJleHAiOjE3NjcyMjU2MDB9.BO-XrUUf8u4aeWDSGWTcC2zvePTMoXLJcJXy-FU9Z-k"
)

func mustKey(secret string) Key {
	k, err := NewKey([]byte(secret))
	if err != nil {
		panic(err)
	}
	return k
}

func sign(t testing.TB, k Key, g Grant) string {
	t.Helper()
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(g)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// flip changes one character of s at i to another of the base64url alphabet.
func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestVerify(t *testing.T) {
	both, err := NewVerifier(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	onlyNew, _ := NewVerifier(newKey)
	good := sign(t, newKey, grant)
	byOld := sign(t, oldKey, grant)
	parts := strings.Split(good, ".")
	other := sign(t, newKey, Grant{Code: "twitter-reg1", RedemptionID: "another", Email: "eve@example.com", Expires: grant.Expires})
	otherParts := strings.Split(other, ".")
	// A token signed with a key that claims the new key's id.
	impostor := sign(t, Key{ID: newKey.ID, Secret: []byte(strings.Repeat("x", 32))}, grant)

	tests := []struct {
		name  string
		v     *Verifier
		token string
		email string
		at    time.Time
		want  error
	}{
		{"valid", both, good, grant.Email, now, nil},
		{"valid until the last second", both, good, grant.Email, now.Add(time.Hour - time.Second), nil},
		{"expired at its second", both, good, grant.Email, now.Add(time.Hour), ErrExpired},
		{"rotation: the old key's tokens verify while it is held", both, byOld, grant.Email, now, nil},
		{"rotation: the old key dropped", onlyNew, byOld, grant.Email, now, ErrUnknownKey},
		{"issued for another email", both, good, "eve@example.com", now, ErrWrongEmail},
		{"email not canonical", both, good, "Player@Example.com", now, ErrWrongEmail},
		{"body swapped", both, strings.Join([]string{parts[0], parts[1], otherParts[2], parts[3]}, "."), grant.Email, now, ErrSignature},
		{"key id swapped", both, strings.Join([]string{parts[0], oldKey.ID, parts[2], parts[3]}, "."), grant.Email, now, ErrSignature},
		{"signed with another secret under a held id", both, impostor, grant.Email, now, ErrSignature},
		{"body tampered", both, strings.Join([]string{parts[0], parts[1], flip(parts[2], 3), parts[3]}, "."), grant.Email, now, ErrSignature},
		{"tag tampered", both, strings.Join([]string{parts[0], parts[1], parts[2], flip(parts[3], 0)}, "."), grant.Email, now, ErrSignature},
		{"tag truncated", both, good[:len(good)-2], grant.Email, now, ErrMalformed},
		{"tag not canonical base64", both, good[:len(good)-1] + "B", grant.Email, now, ErrMalformed},
		{"unknown key id", both, "vr2.zzzzzzzz." + parts[2] + "." + parts[3], grant.Email, now, ErrUnknownKey},
		{"bad key id", both, "vr2.a+b." + parts[2] + "." + parts[3], grant.Email, now, ErrMalformed},
		{"no tag", both, strings.Join(parts[:3], "."), grant.Email, now, ErrMalformed},
		{"an extra part", both, good + ".x", grant.Email, now, ErrMalformed},
		{"version 1 refused by default", both, v1Token, "player@example.com", now, ErrUnknownKey},
		{"empty", both, "", grant.Email, now, ErrMalformed},
		{"too long", both, good + strings.Repeat("A", 1024), grant.Email, now, ErrMalformed},
	}
	for _, tt := range tests {
		c, err := tt.v.VerifyFor(tt.token, tt.email, tt.at)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
			continue
		}
		if tt.want != nil {
			continue
		}
		if c.Code != grant.Code || c.RedemptionID != grant.RedemptionID || !c.Expires.Equal(grant.Expires) || c.Version != 2 {
			t.Errorf("%s: claims %v", tt.name, c)
		}
		if c2, err := tt.v.Verify(tt.token, tt.at); err != nil || c2.Code != c.Code {
			t.Errorf("%s: Verify without an email: %v %v", tt.name, c2, err)
		}
	}
	if c, _ := both.Verify(byOld, now); c.KeyID != oldKey.ID {
		t.Errorf("claims name the key that signed: %q, want %q", c.KeyID, oldKey.ID)
	}
}

func TestV1TokensStillVerifyWhenAccepted(t *testing.T) {
	base, _ := NewVerifier(newKey)
	v, err := base.WithV1(oldKey.Secret, v1Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.VerifyFor(v1Token, "player@example.com", now)
	if err != nil || c.Version != 1 || c.Code != "twitter-reg1" || c.RedemptionID != "" || c.KeyID != "" || c.Expires.Year() != 2100 {
		t.Fatalf("v1 token: %v, %v", c, err)
	}
	for name, tt := range map[string]struct {
		token, email string
		want         error
	}{
		"another email":    {v1Token, "eve@example.com", ErrWrongEmail},
		"expired":          {v1Expired, "player@example.com", ErrExpired},
		"tampered":         {flip(v1Token, 5), "player@example.com", ErrSignature},
		"bad base64":       {"abc.!!", "player@example.com", ErrMalformed},
		"no dot":           {"abc", "player@example.com", ErrMalformed},
		"two dots":         {v1Token + ".x", "player@example.com", ErrMalformed},
		"v2 still checked": {sign(t, newKey, grant), grant.Email, nil},
	} {
		if _, err := v.VerifyFor(tt.token, tt.email, now); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", name, err, tt.want)
		}
	}
	other, _ := base.WithV1(oldKey.Secret)
	if _, err := other.Verify(v1Token, now); !errors.Is(err, ErrSignature) {
		t.Errorf("v1 token with another v1 secret: %v, want ErrSignature", err)
	}
	if _, err := base.Verify(v1Token, now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("WithV1 must not change the verifier it was called on: %v", err)
	}
	if _, err := base.WithV1([]byte("short")); err == nil {
		t.Error("a short v1 secret must be refused")
	}
}

// exampleGrant is the worked example of docs/registration.md.
var exampleGrant = Grant{Code: "twitter-reg1", RedemptionID: "n0", Email: "player@example.com", Expires: time.Unix(4102444800, 0)}

// TestFormat pins the format byte by byte (docs/registration.md shows this
// token): a change that breaks games' verifiers fails here.
func TestFormat(t *testing.T) {
	k := mustKey("example-key-do-not-use-0123456789")
	tok := sign(t, k, exampleGrant)
	const want = "vr2.EUSj4Ek4.AAAAAPSGVwAMdHdpdHRlci1yZWcxAm4woNPNSXEMdrxg_PZg5N985Q.7bqMkmlsu8NCkeD1bCTRrb25k6WWmnBRW3QLHYIWgjk"
	if tok != want {
		t.Fatalf("the format changed:\n got %s\nwant %s", tok, want)
	}
	if k.ID != "EUSj4Ek4" || KeyID(k.Secret) != k.ID {
		t.Errorf("derived key id %q", k.ID)
	}
}

func TestRefusals(t *testing.T) {
	for name, k := range map[string]Key{
		"short secret":   {ID: "a", Secret: []byte("short")},
		"empty id":       {ID: "", Secret: newKey.Secret},
		"id with a dot":  {ID: "a.b", Secret: newKey.Secret},
		"id too long":    {ID: strings.Repeat("a", 33), Secret: newKey.Secret},
		"id not base64u": {ID: "ключ", Secret: newKey.Secret},
	} {
		if _, err := NewSigner(k); err == nil {
			t.Errorf("NewSigner with %s: accepted", name)
		}
		if _, err := NewVerifier(k); err == nil {
			t.Errorf("NewVerifier with %s: accepted", name)
		}
	}
	if _, err := NewKey([]byte("short")); err == nil {
		t.Error("NewKey with a short secret: accepted")
	}
	if _, err := NewVerifier(); err == nil {
		t.Error("a verifier without keys: accepted")
	}
	if _, err := NewVerifier(newKey, Key{ID: newKey.ID, Secret: oldKey.Secret}); err == nil {
		t.Error("two keys with one id: accepted")
	}
	s, _ := NewSigner(newKey)
	for name, g := range map[string]Grant{
		"no code":            {RedemptionID: "r", Email: "e@x.org", Expires: now},
		"long code":          {Code: strings.Repeat("c", 256), RedemptionID: "r", Email: "e@x.org", Expires: now},
		"no redemption id":   {Code: "c", Email: "e@x.org", Expires: now},
		"long redemption":    {Code: "c", RedemptionID: strings.Repeat("r", 256), Email: "e@x.org", Expires: now},
		"code not UTF-8":     {Code: "\xff", RedemptionID: "r", Email: "e@x.org", Expires: now},
		"no email":           {Code: "c", RedemptionID: "r", Expires: now},
		"no expiry":          {Code: "c", RedemptionID: "r", Email: "e@x.org"},
		"expiry before 1970": {Code: "c", RedemptionID: "r", Email: "e@x.org", Expires: time.Unix(-5, 0)},
	} {
		if tok, err := s.Sign(g); err == nil {
			t.Errorf("Sign with %s: %s", name, tok)
		}
	}
	// The longest fields fit, and round-trip.
	long := Grant{Code: strings.Repeat("c", 255), RedemptionID: strings.Repeat("r", 255), Email: "e@x.org", Expires: now.Add(time.Minute)}
	v, _ := NewVerifier(newKey)
	if c, err := v.VerifyFor(sign(t, newKey, long), "e@x.org", now); err != nil || c.Code != long.Code || c.RedemptionID != long.RedemptionID {
		t.Errorf("longest fields: %v %v", c, err)
	}
}

func TestClaimsPrintNoBinding(t *testing.T) {
	v, _ := NewVerifier(newKey)
	c, err := v.Verify(sign(t, newKey, grant), now)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%v", &c)} {
		if !strings.Contains(s, "twitter-reg1") || strings.Contains(s, "binding") {
			t.Errorf("printed claims: %s", s)
		}
	}
	v1, _ := v.WithV1(v1Key)
	c, _ = v1.Verify(v1Token, now)
	if s := fmt.Sprintf("%+v", c); strings.Contains(s, "player@example.com") {
		t.Errorf("printed v1 claims hold the email: %s", s)
	}
}

func TestSignerKeepsItsOwnCopyOfTheSecret(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	k := Key{ID: "k1", Secret: secret}
	s, _ := NewSigner(k)
	v, _ := NewVerifier(k)
	secret[0] = 'x' // the caller reuses its buffer
	tok, _ := s.Sign(grant)
	if _, err := v.Verify(tok, now); err != nil {
		t.Errorf("after the caller changed its buffer: %v", err)
	}
}
