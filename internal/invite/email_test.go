package invite

import (
	"errors"
	"strings"
	"testing"
)

func TestParseEmail(t *testing.T) {
	tests := []struct {
		raw       string
		canonical string // empty: must be rejected
	}{
		{"player@example.com", "player@example.com"},
		{"  Player@Example.COM \n", "player@example.com"},
		{"player+beta@example.com", "player@example.com"},
		{"p.l.a.y.e.r@gmail.com", "player@gmail.com"},
		{"P.Layer+x@GoogleMail.com", "player@gmail.com"},
		{"p.layer@example.com", "p.layer@example.com"}, // dots matter outside Gmail
		{"user@пример.рф", "user@xn--e1afmkfd.xn--p1ai"},
		{"user@xn--e1afmkfd.xn--p1ai", "user@xn--e1afmkfd.xn--p1ai"},
		{"Почта@пример.рф", "почта@xn--e1afmkfd.xn--p1ai"},
		{"o'brien@example.ie", "o'brien@example.ie"},
		{"a@b.co.", "a@b.co"},
		{"", ""},
		{"plainaddress", ""},
		{"@example.com", ""},
		{"player@", ""},
		{"player@localhost", ""},
		{"player@[127.0.0.1]", ""},
		{"player@1.2.3.4", ""},
		{"Player <player@example.com>", ""},
		{`"quoted"@example.com`, ""},
		{"pla yer@example.com", ""},
		{"player@exa mple.com", ""},
		{".player@example.com", ""},
		{"play..er@example.com", ""},
		{"player.@example.com", ""},
		{"+tag@example.com", ""},
		{"player@-example.com", ""},
		{"player@example..com", ""},
		{"pla\x00yer@example.com", ""},
		{"player\r\nbcc:x@example.com", ""},
		{"a@b@example.com", ""},
		{"$where@example.com", "$where@example.com"}, // harmless as a value: stored, never interpreted
		{"player@exa$mple.com", ""},
		{"\xff@example.com", ""},
		{strings.Repeat("a", 65) + "@example.com", ""},
		{"a@" + strings.Repeat("b", 250) + ".com", ""},
	}
	for _, tt := range tests {
		got, err := ParseEmail(tt.raw, DefaultFolding)
		if tt.canonical == "" {
			if !errors.Is(err, ErrInvalidEmail) {
				t.Errorf("ParseEmail(%q) = %+v, %v; want ErrInvalidEmail", tt.raw, got, err)
			}
			continue
		}
		if err != nil || got.Canonical != tt.canonical || got.Raw != strings.TrimSpace(tt.raw) {
			t.Errorf("ParseEmail(%q) = %+v, %v; want canonical %q", tt.raw, got, err, tt.canonical)
		}
	}
}

func TestParseEmailFoldingOff(t *testing.T) {
	got, err := ParseEmail("P.L+x@gmail.com", Folding{})
	if err != nil || got.Canonical != "p.l+x@gmail.com" {
		t.Fatalf("got %+v, %v; want p.l+x@gmail.com", got, err)
	}
}

// FuzzParseEmail checks properties every accepted address must have: the
// canonical form is itself accepted and is a fixed point, so two requests can
// never disagree about who a person is.
func FuzzParseEmail(f *testing.F) {
	for _, s := range []string{"player@example.com", "P.L+x@googlemail.com", "user@пример.рф", "a@b", "\"x\"@y.z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		e, err := ParseEmail(raw, DefaultFolding)
		if err != nil {
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(e.Canonical) > maxEmailLen || strings.ContainsAny(e.Canonical, " \t\r\n<>\"") {
			t.Fatalf("bad canonical %q from %q", e.Canonical, raw)
		}
		again, err := ParseEmail(e.Canonical, DefaultFolding)
		if err != nil || again.Canonical != e.Canonical {
			t.Fatalf("canonical %q of %q is not a fixed point: %q, %v", e.Canonical, raw, again.Canonical, err)
		}
	})
}
