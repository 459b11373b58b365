package mail

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	s, err := NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSigner([]byte(strings.Repeat("o", 32)))
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	good := s.Sign(Claims{Code: "twitter-reg1", Email: "p@example.com", Expires: now.Add(time.Hour).Unix()})
	p, sig, _ := strings.Cut(good, ".")
	forged := s.Sign(Claims{Code: "twitter-reg1", Email: "eve@example.com", Expires: now.Add(time.Hour).Unix()})
	fp, _, _ := strings.Cut(forged, ".")
	flip := func(s string) string { // change one character of the signature
		b := []byte(s)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name  string
		token string
		at    time.Time
		want  error
	}{
		{"valid", good, now, nil},
		{"valid until the last second", good, now.Add(time.Hour - time.Second), nil},
		{"expired", good, now.Add(time.Hour), ErrTokenExpired},
		{"payload swapped", fp + "." + sig, now, ErrTokenSignature},
		{"signature tampered", p + "." + flip(sig), now, ErrTokenSignature},
		{"signed with another key", other.Sign(Claims{Code: "c", Email: "e", Expires: now.Add(time.Hour).Unix()}), now, ErrTokenSignature},
		{"no dot", p + sig, now, ErrTokenMalformed},
		{"bad base64", p + ".!!", now, ErrTokenMalformed},
		{"empty", "", now, ErrTokenMalformed},
	}
	for _, tt := range tests {
		c, err := s.Verify(tt.token, tt.at)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		if tt.want == nil && (c.Code != "twitter-reg1" || c.Email != "p@example.com") {
			t.Errorf("%s: claims %+v", tt.name, c)
		}
	}
	if _, err := NewSigner([]byte("short")); err == nil {
		t.Error("a short key must be refused")
	}
}
