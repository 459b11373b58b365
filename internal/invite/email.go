package invite

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Email is an address as a player typed it (trimmed) and its canonical form.
// Canonical is the identity "one person, one invitation" is enforced on; Raw
// is where mail is sent.
type Email struct {
	Canonical string
	Raw       string
}

// Folding chooses which provider-specific aliases count as the same person.
type Folding struct {
	// PlusTags drops "+tag" from the local part (a+beta@x.org is a@x.org).
	PlusTags bool
	// GmailDots drops dots in gmail.com and googlemail.com local parts and
	// maps googlemail.com to gmail.com, as Gmail delivers them all to one box.
	GmailDots bool
}

// DefaultFolding folds everything we know to be an alias.
var DefaultFolding = Folding{PlusTags: true, GmailDots: true}

// Limits from RFC 5321 (path and local part) and RFC 1035 (labels).
const (
	maxEmailLen = 254
	maxLocalLen = 64
	maxLabelLen = 63
)

// lookup converts internationalised domains to ASCII (punycode) with the
// checks a resolver applies, so "пример.рф" and "xn--e1afmkfd.xn--p1ai" are
// the same domain.
var lookup = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.StrictDomainName(true), idna.Transitional(false))

// ParseEmail validates raw as a bare addr-spec (no display name, no comments,
// no quoted local part, no IP literal) and returns it with its canonical form.
// Errors wrap ErrInvalidEmail with a reason fit to show the player.
//
// Raw and Canonical must name the same mailbox: mail goes to Raw, uniqueness
// is enforced on Canonical, so a normalisation that changes the mailbox lets
// one player take another's slot (victim@gmail。com stored as
// victim@gmail.com). Canonical therefore differs from Raw only by ASCII case,
// the folds in f and one trailing dot of the domain; an address that any
// other normalisation (Unicode case, NFC, UTS 46 mapping) would change is
// rejected rather than silently rewritten.
func ParseEmail(raw string, f Folding) (Email, error) {
	raw = strings.TrimSpace(raw)
	switch {
	case raw == "":
		return Email{}, invalid("email is empty")
	case len(raw) > maxEmailLen:
		return Email{}, invalid("email is longer than %d characters", maxEmailLen)
	case !utf8.ValidString(raw):
		return Email{}, invalid("email is not valid UTF-8")
	}
	at := strings.LastIndexByte(raw, '@')
	if at <= 0 || at == len(raw)-1 {
		return Email{}, invalid("email must look like name@example.com")
	}
	local, domain := raw[:at], raw[at+1:]
	if len(local) > maxLocalLen {
		return Email{}, invalid("the part before @ is longer than %d characters", maxLocalLen)
	}
	// Lower-casing must touch ASCII letters only: the Kelvin sign K would
	// become k, and mail servers compare non-ASCII local parts as bytes.
	for _, r := range local {
		if l := unicode.ToLower(r); r >= utf8.RuneSelf && l != r {
			return Email{}, invalid("the part before @ contains %q, which changes when lower-cased; type it as %q", r, l)
		}
	}
	if err := checkLocal(local); err != nil {
		return Email{}, err
	}
	domain, err := canonicalDomain(domain)
	if err != nil {
		return Email{}, err
	}

	local = strings.ToLower(local)
	if f.PlusTags {
		if i := strings.IndexByte(local, '+'); i >= 0 {
			local = local[:i]
		}
	}
	if f.GmailDots && (domain == "gmail.com" || domain == "googlemail.com") {
		local, domain = strings.ReplaceAll(local, ".", ""), "gmail.com"
	}
	if local == "" {
		return Email{}, invalid("the part before @ is empty once +tags are removed")
	}
	// Folding can leave a form that is no address ("a.+x" -> "a.", or
	// "J\u030C" -> "j\u030C", which NFC would compose); the canonical form must
	// itself be valid, or two spellings could disagree.
	if err := checkLocal(local); err != nil {
		return Email{}, err
	}
	return Email{Canonical: local + "@" + domain, Raw: raw}, nil
}

// checkLocal accepts a dot-atom (RFC 5322 atext) extended with Unicode letters,
// marks and digits (RFC 6531). Quoted strings are rejected: no player needs
// them and they make two spellings of one mailbox. So is a local part not in
// NFC: é typed as e + U+0301 is another byte string, hence possibly another
// mailbox, than the é we would otherwise store.
func checkLocal(local string) error {
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return invalid("dots in the part before @ must separate words")
	}
	// ASCII is always in NFC, and most addresses are ASCII: skip the check,
	// which allocates.
	if !isASCII(local) && !norm.NFC.IsNormalString(local) {
		return invalid("the part before @ contains characters that change when normalised, such as an accent typed as a separate mark; type each accented letter as one character")
	}
	for _, r := range local {
		switch {
		case r < utf8.RuneSelf && (isAlnum(byte(r)) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", byte(r)) >= 0):
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)):
		default:
			return invalid("the part before @ contains %q", r)
		}
	}
	return nil
}

// canonicalDomain is the domain as stored: to ASCII (IDNA), lower-cased,
// one trailing dot removed, or why it is not valid.
func canonicalDomain(domain string) (string, error) {
	if plain, ok := plainDomain(domain); ok {
		return plain, nil
	}
	return idnaDomain(domain)
}

func idnaDomain(domain string) (string, error) {
	if strings.HasPrefix(domain, "[") {
		return "", invalid("address literals are not accepted")
	}
	ascii, err := lookup.ToASCII(domain)
	if err != nil {
		return "", invalid("the domain is not valid")
	}
	ascii = strings.ToLower(strings.TrimSuffix(ascii, "."))
	if !strings.Contains(ascii, ".") {
		return "", invalid("the domain must contain a dot")
	}
	for l := range strings.SplitSeq(ascii, ".") {
		if l == "" || len(l) > maxLabelLen || l[0] == '-' || l[len(l)-1] == '-' {
			return "", invalid("the domain is not valid")
		}
		for i := 0; i < len(l); i++ {
			if !isAlnum(l[i]) && l[i] != '-' {
				return "", invalid("the domain is not valid")
			}
		}
	}
	if tld := ascii[strings.LastIndexByte(ascii, '.')+1:]; strings.Trim(tld, "0123456789") == "" {
		return "", invalid("the domain is not valid")
	}
	// UTS 46 mapping turns full-width and ideographic dots into ".", drops
	// soft hyphens and folds Unicode case, so what the player typed may not
	// name the domain we store. Accept only the two spellings that do: the
	// ASCII (punycode) form and the Unicode form of that domain.
	if typed := asciiLower(strings.TrimSuffix(domain, ".")); typed != ascii {
		uni, err := lookup.ToUnicode(ascii)
		if err != nil {
			uni = ascii // the one spelling we know names it
		}
		if typed != uni {
			return "", invalid("the domain contains characters that change when normalised; type it as %s", uni)
		}
	}
	return ascii, nil
}

// plainDomain is what idnaDomain returns for the domains nearly every player
// types: two labels or more, each of 1 to 63 ASCII letters, digits and inner
// hyphens, none with hyphens in its 3rd and 4th places (as an "xn--" label
// has: punycode, which the IDNA lookup decodes and checks), the last not
// all digits. UTS 46 changes nothing in those but the case, and the lookup
// refuses none of them. ok is false for every other domain, which must go
// through idnaDomain; FuzzPlainDomain holds the two equal. The shortcut
// matters because the lookup was a third of what a redemption answered from
// memory costs (an exhausted code's crowd).
func plainDomain(domain string) (lower string, ok bool) {
	labels, size, digits, upper := 0, 0, true, false
	for i := 0; i <= len(domain); i++ {
		if i == len(domain) || domain[i] == '.' {
			if size == 0 || size > maxLabelLen || domain[i-1] == '-' {
				return "", false
			}
			labels++
			if i < len(domain) {
				size, digits = 0, true
			}
			continue
		}
		switch c := domain[i]; {
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z':
			digits = false
		case 'A' <= c && c <= 'Z':
			digits, upper = false, true
		case c == '-' && size > 0 && !(size == 3 && domain[i-1] == '-'):
		default:
			return "", false
		}
		size++
	}
	if labels < 2 || digits {
		return "", false
	}
	if upper {
		return asciiLower(domain), true
	}
	return domain, true
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidEmail, fmt.Sprintf(format, args...))
}
