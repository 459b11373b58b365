package mail

import (
	"strings"
	"testing"
)

// TestDefaultTemplatesPhrasing: the default email reads naturally with any
// game name, a common noun ("our game") and a title with an article
// included, and with none at all (other sentences, not a gap).
func TestDefaultTemplatesPhrasing(t *testing.T) {
	tests := []struct {
		lang, game, subject string
		sentences           []string // in the text body
	}{
		{"en", "Starfall", "Your beta invitation for Starfall", []string{"for the closed beta of Starfall: you are player number 7"}},
		{"en", "our game", "Your beta invitation for our game", []string{"for the closed beta of our game: you are"}},
		{"en", "The Last Orbit", "Your beta invitation for The Last Orbit", []string{"for the closed beta of The Last Orbit: you are"}},
		{"en", "", "Your beta invitation", []string{"you redeemed the invitation code tw for the closed beta: you are player number 7"}},
		{"ru", "Starfall", "Ваше приглашение в закрытый бета-тест игры «Starfall»", []string{"в закрытый бета-тест игры «Starfall»: вы игрок номер 7"}},
		{"ru", "Звёздный путь", "Ваше приглашение в закрытый бета-тест игры «Звёздный путь»", []string{"бета-тест игры «Звёздный путь»: вы игрок"}},
		{"ru", "", "Ваше приглашение в закрытый бета-тест", []string{"код приглашения tw в закрытый бета-тест: вы игрок номер 7"}},
	}
	headings := map[string][2]string{ // with a name, without
		"en": {"Welcome to the closed beta of %s</h1>", "Welcome to the closed beta</h1>"},
		"ru": {"Добро пожаловать в закрытый бета-тест игры «%s»</h1>", "Добро пожаловать в закрытый бета-тест</h1>"},
	}
	tpl := DefaultTemplates()
	for _, tt := range tests {
		r, err := tpl.Render(tt.lang, Data{GameName: tt.game, Code: "tw", Position: 7, Link: "https://game.example/register?token=x", Expires: "1 May"})
		if err != nil {
			t.Fatalf("%s %q: %v", tt.lang, tt.game, err)
		}
		if r.Subject != tt.subject {
			t.Errorf("%s %q: subject %q, want %q", tt.lang, tt.game, r.Subject, tt.subject)
		}
		heading := strings.Replace(headings[tt.lang][0], "%s", tt.game, 1)
		if tt.game == "" {
			heading = headings[tt.lang][1]
		}
		if !strings.Contains(r.HTML, heading) {
			t.Errorf("%s %q: the HTML heading is not %q:\n%s", tt.lang, tt.game, heading, r.HTML)
		}
		for _, s := range tt.sentences {
			if !strings.Contains(r.Text, s) {
				t.Errorf("%s %q: the text lacks %q:\n%s", tt.lang, tt.game, s, r.Text)
			}
		}
		for _, body := range []string{r.Subject, r.Text, r.HTML} {
			for _, bad := range []string{"  ", " :", "«»", "the our", "Your our", " .", "игры :"} {
				if strings.Contains(body, bad) {
					t.Errorf("%s %q: %q in %q", tt.lang, tt.game, bad, body)
				}
			}
		}
	}
}
