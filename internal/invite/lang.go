package invite

import "strings"

// Languages players are spoken to in; anything else gets English.
var Languages = []string{"en", "ru"}

// PreferredLanguage picks a language we speak from an Accept-Language list:
// the first one listed (browsers list them in order of preference; q-values
// are not weighed).
func PreferredLanguage(acceptLanguage string) string {
	// Cut rather than Split: every redemption asks, and Split allocates.
	for rest := acceptLanguage; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		tag, _, _ := strings.Cut(part, ";")
		base, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(tag)), "-")
		for _, l := range Languages {
			if base == l {
				return l
			}
		}
	}
	return "en"
}
