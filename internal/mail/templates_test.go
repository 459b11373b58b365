package mail

import (
	"strings"
	"testing"
)

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
