package invite

import "strings"

// Languages players are spoken to in; anything else gets English.
var Languages = []string{"en", "ru"}

// PreferredLanguage picks a language we speak from an Accept-Language list:
// the first one listed (browsers list them in order of preference; q-values
// are not weighed).
func PreferredLanguage(acceptLanguage string) string {
	for _, part := range strings.Split(acceptLanguage, ",") {
		tag := strings.ToLower(strings.TrimSpace(strings.SplitN(part, ";", 2)[0]))
		base := strings.SplitN(tag, "-", 2)[0]
		for _, l := range Languages {
			if base == l {
				return l
			}
		}
	}
	return "en"
}
