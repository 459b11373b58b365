package invite

import "testing"

func TestPreferredLanguage(t *testing.T) {
	for accept, want := range map[string]string{
		"": "en", "ru": "ru", "ru-RU,ru;q=0.9,en;q=0.8": "ru", "en-GB,ru;q=0.5": "en",
		"de-DE,ru;q=0.7": "ru", "fr,de": "en", " RU ": "ru", "*": "en",
	} {
		if got := PreferredLanguage(accept); got != want {
			t.Errorf("PreferredLanguage(%q) = %s, want %s", accept, got, want)
		}
	}
}
