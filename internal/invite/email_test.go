package invite

import (
	"errors"
	"fmt"
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
		{"почта@пример.рф", "почта@xn--e1afmkfd.xn--p1ai"},
		{"Почта@пример.рф", ""}, // Unicode upper case is not folded: see TestParseEmailSameMailbox
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

// TestParseEmailSameMailbox covers issue 10 item 6: mail goes to Raw and
// uniqueness is enforced on Canonical, so an address is accepted only if both
// name the same mailbox; anything a normalisation would rewrite is refused.
func TestParseEmailSameMailbox(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		canonical string // empty: must be rejected
		detail    string // when rejected, the detail must contain this
		unlike    string // when accepted, this address's canonical form must differ
	}{
		{name: "full-width dot", raw: "victim@gmail\uFF0Ecom", detail: "type it as gmail.com"},
		{name: "ideographic full stop", raw: "victim@gmail\u3002com", detail: "type it as gmail.com"},
		{name: "halfwidth ideographic full stop", raw: "victim@gmail\uFF61com", detail: "type it as gmail.com"},
		{name: "ideographic full stop as trailing dot", raw: "victim@gmail.com\u3002", detail: "type it as gmail.com"},
		{name: "soft hyphen in domain", raw: "victim@gm\u00ADail.com", detail: "type it as gmail.com"},
		{name: "soft hyphen in local part", raw: "vic\u00ADtim@gmail.com", detail: "part before @"},
		{name: "Kelvin sign in local part", raw: "\u212Aate@example.com", detail: "changes when lower-cased"},
		{name: "upper-case Cyrillic local part", raw: "ПЁТР@example.com", detail: "changes when lower-cased"},
		{name: "upper-case Unicode domain", raw: "user@ПРИМЕР.РФ", detail: "type it as пример.рф"},
		{name: "upper-case non-ASCII letter in domain", raw: "user@BÜCHER.de", detail: "type it as bücher.de"},
		{name: "full-width letters in domain", raw: "user@\uFF45xample.com", detail: "type it as example.com"},
		{name: "NFD local part", raw: "e\u0301mile@example.com", detail: "normalised"},
		{name: "NFC only after lower-casing", raw: "J\u030C@example.com", detail: "normalised"},
		{name: "NFC only after removing Gmail dots", raw: "e.\u0301x@gmail.com", detail: "normalised"},

		{name: "NFC local part", raw: "\u00E9mile@example.com", canonical: "\u00E9mile@example.com"},
		{name: "lower-case Cyrillic local part kept", raw: "п\u0451тр@example.com", canonical: "п\u0451тр@example.com"},
		{name: "mixed scripts in local part", raw: "p\u0430ypal@gmail.com", canonical: "p\u0430ypal@gmail.com", unlike: "paypal@gmail.com"},
		{name: "mixed scripts in domain", raw: "user@p\u0430ypal.com", canonical: "user@xn--pypal-4ve.com", unlike: "user@paypal.com"},
		{name: "punycode domain", raw: "user@xn--e1afmkfd.xn--p1ai", canonical: "user@xn--e1afmkfd.xn--p1ai"},
		{name: "upper-case punycode domain", raw: "user@XN--E1AFMKFD.XN--P1AI", canonical: "user@xn--e1afmkfd.xn--p1ai"},
		{name: "Unicode domain", raw: "user@пример.рф", canonical: "user@xn--e1afmkfd.xn--p1ai"},
		{name: "Unicode domain with trailing dot", raw: "user@пример.рф.", canonical: "user@xn--e1afmkfd.xn--p1ai"},
		{name: "ASCII upper case in Unicode domain", raw: "user@Bücher.de", canonical: "user@xn--bcher-kva.de"},
		{name: "ASCII upper case folded", raw: "PLAYER@EXAMPLE.COM", canonical: "player@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEmail(tt.raw, DefaultFolding)
			if tt.canonical == "" {
				detail := strings.TrimPrefix(fmt.Sprint(err), ErrInvalidEmail.Error()+": ")
				if !errors.Is(err, ErrInvalidEmail) || detail == "" || !strings.Contains(detail, tt.detail) {
					t.Fatalf("ParseEmail(%+q) = %+q, %v; want ErrInvalidEmail with detail containing %q", tt.raw, got, err, tt.detail)
				}
				return
			}
			if err != nil || got.Canonical != tt.canonical || got.Raw != tt.raw {
				t.Fatalf("ParseEmail(%+q) = %+q, %v; want canonical %+q", tt.raw, got, err, tt.canonical)
			}
			if tt.unlike != "" {
				other, err := ParseEmail(tt.unlike, DefaultFolding)
				if err != nil || other.Canonical == got.Canonical {
					t.Fatalf("%+q and %+q share canonical %+q (%v); they are different mailboxes", tt.raw, tt.unlike, got.Canonical, err)
				}
			}
		})
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
// never disagree about who a person is; and it names the mailbox mail is sent
// to, so one person cannot take another's slot. Attack inputs from issue 10
// are in testdata/fuzz/FuzzParseEmail.
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
		if !sameMailbox(e.Raw, e.Canonical) {
			t.Fatalf("raw %+q and canonical %+q name different mailboxes", e.Raw, e.Canonical)
		}
	})
}

// sameMailbox reports whether canonical is raw with nothing changed but what
// DefaultFolding may change: ASCII case, one trailing dot of the domain, a
// +tag, Gmail dots and googlemail.com, and a domain typed in Unicode.
func sameMailbox(raw, canonical string) bool {
	at, cat := strings.LastIndexByte(raw, '@'), strings.LastIndexByte(canonical, '@')
	local, domain := asciiLower(raw[:at]), asciiLower(strings.TrimSuffix(raw[at+1:], "."))
	clocal, cdomain := canonical[:cat], canonical[cat+1:]
	if i := strings.IndexByte(local, '+'); i >= 0 {
		local = local[:i]
	}
	if cdomain == "gmail.com" && (domain == "gmail.com" || domain == "googlemail.com") {
		local, domain = strings.ReplaceAll(local, ".", ""), cdomain
	}
	uni, err := lookup.ToUnicode(cdomain)
	return local == clocal && (domain == cdomain || err == nil && domain == uni)
}

// FuzzPlainDomain holds canonicalDomain's shortcut to the IDNA path it
// skips: whenever plainDomain takes a domain, idnaDomain accepts it and
// returns the same. The seeds are every string of up to 5 characters from an
// alphabet of the cases that matter (case, digits, hyphens, dots, "xn--",
// a non-ASCII letter), and longer ones.
func FuzzPlainDomain(f *testing.F) {
	alphabet := []string{"a", "Z", "0", "-", ".", "x", "n", "ß"}
	level := []string{""}
	for range 5 {
		var next []string
		for _, s := range level {
			for _, c := range alphabet {
				next = append(next, s+c)
			}
		}
		for _, s := range next {
			f.Add(s)
		}
		level = next
	}
	for _, s := range []string{"Example.COM", "gone.example.com", "xn--e1afmkfd.xn--p1ai", "ab--cd.com", "abc--d.com", "a.b.", ".a.b", "a..b",
		"-a.b", "a-.b", "a-b-c.d-e", "a.b-", "a.1", "a.1b", "1.2.3.4", strings.Repeat("a", 63) + ".com", strings.Repeat("a", 64) + ".com",
		"a_b.com", "a b.com", "a@b.com", "[1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, domain string) {
		plain, ok := plainDomain(domain)
		if !ok {
			return
		}
		if ascii, err := idnaDomain(domain); err != nil || ascii != plain {
			t.Fatalf("plainDomain(%q) = %q, but idnaDomain gives %q, %v", domain, plain, ascii, err)
		}
	})
}
