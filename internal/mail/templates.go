package mail

import (
	"bytes"
	"embed"
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
