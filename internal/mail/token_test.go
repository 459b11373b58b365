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

func TestTemplateOverride(t *testing.T) {
	base := DefaultTemplates()
	tpl, err := base.Override(map[string]string{"en.subject": "Join {{.GameName}} with {{.Code}}", "ru.html": "<p>{{.Link}}</p>"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := tpl.Render("en", Data{GameName: "Starfall", Code: "tw", Link: "https://x/?a=<b>"})
	if err != nil || r.Subject != "Join Starfall with tw" || !strings.Contains(r.Text, "tw") {
		t.Fatalf("en: %+v, %v", r, err)
	}
	r, err = tpl.Render("ru", Data{Link: "https://x/?a=<b>"})
	if err != nil || !strings.Contains(r.HTML, "&lt;b&gt;") || !strings.Contains(r.Subject, "бета") {
		t.Fatalf("ru: overridden HTML is still escaped, other parts keep the defaults: %+v, %v", r, err)
	}
	for name, bad := range map[string]map[string]string{
		"unknown language": {"de.subject": "x"},
		"unknown part":     {"en.footer": "x"},
		"does not parse":   {"en.text": "{{.Code"},
		"unknown field":    {"en.text": "{{.Password}}"},
	} {
		if _, err := base.Override(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if d, _ := base.Render("en", Data{Code: "x"}); d.Subject != "Your  beta invitation" && !strings.Contains(d.Subject, "beta") {
		t.Errorf("defaults changed by Override: %q", d.Subject)
	}
}
