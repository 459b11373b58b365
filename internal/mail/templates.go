package mail

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"

	"github.com/velvetrope/velvetrope/internal/invite"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

// Data is what a template may use.
type Data struct {
	GameName string
	Code     string
	Position int    // the player's number on this code, by time of redemption
	Link     string // registration link with the signed token
	Expires  string // when the link stops working, for people
}

// Rendered is one email's subject and bodies.
type Rendered struct {
	Subject, Text, HTML string
}

type langTemplates struct {
	subject, text *texttemplate.Template
	html          *htmltemplate.Template
}

// Templates renders emails per language. The HTML body is html/template, so
// nothing a template inserts can break out of its context.
type Templates struct {
	byLang map[string]langTemplates
}

// DefaultTemplates returns the built-in templates.
func DefaultTemplates() *Templates {
	t := &Templates{byLang: map[string]langTemplates{}}
	for _, lang := range invite.Languages {
		read := func(kind string) string {
			b, err := templateFS.ReadFile("templates/" + lang + "." + kind + ".tmpl")
			if err != nil {
				panic(err) // embedded: a missing file is a build error
			}
			return string(b)
		}
		t.byLang[lang] = langTemplates{
			subject: texttemplate.Must(texttemplate.New("subject").Parse(read("subject"))),
			text:    texttemplate.Must(texttemplate.New("text").Parse(read("txt"))),
			html:    htmltemplate.Must(htmltemplate.New("html").Parse(read("html"))),
		}
	}
	return t
}

// Render writes the email for lang (English when unknown).
func (t *Templates) Render(lang string, d Data) (Rendered, error) {
	lt, ok := t.byLang[lang]
	if !ok {
		lt = t.byLang["en"]
	}
	var subject, text, html bytes.Buffer
	if err := lt.subject.Execute(&subject, d); err != nil {
		return Rendered{}, err
	}
	if err := lt.text.Execute(&text, d); err != nil {
		return Rendered{}, err
	}
	if err := lt.html.Execute(&html, d); err != nil {
		return Rendered{}, err
	}
	return Rendered{Subject: strings.TrimSpace(subject.String()), Text: text.String(), HTML: html.String()}, nil
}

// Override returns templates where the given parts replace the defaults.
// Keys are "<lang>.<part>" (part: subject, text or html, lang: one of
// invite.Languages); a key that is not one of those, or a template that does
// not parse, is an error, so the operator can refuse it before any email.
func (t *Templates) Override(parts map[string]string) (*Templates, error) {
	out := &Templates{byLang: map[string]langTemplates{}}
	for lang, lt := range t.byLang {
		out.byLang[lang] = lt
	}
	for key, src := range parts {
		lang, part, _ := strings.Cut(key, ".")
		lt, ok := out.byLang[lang]
		if !ok {
			return nil, fmt.Errorf("template %q: language must be one of %v", key, invite.Languages)
		}
		var err error
		switch part {
		case "subject":
			lt.subject, err = texttemplate.New(key).Option("missingkey=error").Parse(src)
		case "text":
			lt.text, err = texttemplate.New(key).Option("missingkey=error").Parse(src)
		case "html":
			lt.html, err = htmltemplate.New(key).Option("missingkey=error").Parse(src)
		default:
			return nil, fmt.Errorf("template %q: part must be subject, text or html", key)
		}
		if err != nil {
			return nil, fmt.Errorf("template %q: %w", key, err)
		}
		out.byLang[lang] = lt
	}
	// A template that parses can still fail on our data (an unknown field):
	// render each language once with sample data.
	for lang := range out.byLang {
		if _, err := out.Render(lang, Data{GameName: "G", Code: "c", Position: 1, Link: "https://x/", Expires: "t"}); err != nil {
			return nil, fmt.Errorf("templates for %s: %w", lang, err)
		}
	}
	return out, nil
}
