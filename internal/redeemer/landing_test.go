package redeemer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"html"
	"image"
	"image/gif"
	"image/png"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/redeemer"
)

func page(t *testing.T, c *http.Client, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header, readAll(t, resp)
}

func postForm(t *testing.T, c *http.Client, url, body string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestLandingPage(t *testing.T) {
	st := newStore(t, active("twitter-reg1", 2))
	r := startReplica(t, st, redeemer.Config{Brands: redeemer.Brands{Default: redeemer.Branding{Title: "Starfall", Accent: "#aa3300"}}})
	noRedirect := *r.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &noRedirect
	url := r.URL + "/invitations/twitter-reg1"

	status, h, body := page(t, c, url, "Accept-Language", "en-GB,en;q=0.9")
	for _, want := range []string{"Join the Starfall closed beta", `<form id="redeem" method="post" action="/invitations/twitter-reg1"`, "2 places left", `aria-live="polite"`, "#aa3300", `href="/invitations/twitter-reg1?lang=ru"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if status != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'sha256-") ||
		h.Get("Cache-Control") != "public, max-age=0, s-maxage=5" || h.Get("ETag") == "" {
		t.Errorf("headers: %d %v", status, h)
	}
	if status, _, _ := page(t, c, url, "Accept-Language", "en", "If-None-Match", h.Get("ETag")); status != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", status)
	}
	if _, _, body := page(t, c, url, "Accept-Language", "ru-RU,ru;q=0.9"); !strings.Contains(body, "Закрытый бета-тест Starfall") || !strings.Contains(body, `<html lang="ru">`) {
		t.Errorf("Russian page: %s", body[:min(len(body), 400)])
	}
	if _, _, body := page(t, c, url+"?lang=ru", "Accept-Language", "en"); !strings.Contains(body, "Получить приглашение") {
		t.Error("?lang=ru switches the language")
	}

	// The form without JavaScript: POST, 303, result page.
	resp := postForm(t, c, url, "email=Form.Player%40example.com&lang=en")
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/invitations/twitter-reg1/result?outcome=redeemed&lang=en" {
		t.Fatalf("form post: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, _, body := page(t, c, r.URL+resp.Header.Get("Location")); !strings.Contains(body, "You&#39;re in! Check your inbox") || strings.Contains(body, `<form id="redeem"`) {
		t.Errorf("result page: %s", body)
	}
	resp = postForm(t, c, url, "email=form.player%40example.com&lang=ru")
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "outcome=already&lang=ru") {
		t.Errorf("again: %s", loc)
	}

	// An invalid email: the page again, what was typed kept (escaped), an inline error.
	resp = postForm(t, c, url, "email=%3Cscript%3Ealert(1)%3C%2Fscript%3E&lang=en")
	b := readAll(t, resp)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(b, `value="&lt;script&gt;alert(1)&lt;/script&gt;"`) || strings.Contains(b, "<script>alert") ||
		!strings.Contains(b, `aria-invalid="true"`) || !strings.Contains(b, "Please enter a valid email") {
		t.Errorf("invalid email: %d %s", resp.StatusCode, b)
	}

	// A cross-site form post is refused and stores nothing (CSRF).
	resp = postForm(t, c, url, "email=victim%40example.com", "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site form post: %d, want 403", resp.StatusCode)
	}

	// Fill the code: the page says so and offers no form.
	redeem(t, c, r.URL, "twitter-reg1", "last@example.com")
	if _, _, body := page(t, c, url, "Accept-Language", "en"); !strings.Contains(body, "every place on this invitation is taken") || strings.Contains(body, "<form") {
		t.Errorf("full page: %s", body)
	}
	if n, _ := st.Used(context.Background(), "twitter-reg1"); n != 2 {
		t.Errorf("%d stored, want 2 (form, then last)", n)
	}

	// API clients still get JSON.
	if got := do(t, c, "GET", url, "", ""); got.status != 200 || got.body["state"] != "exhausted" {
		t.Errorf("JSON status: %d %v", got.status, got.body)
	}
	if status, _, body := page(t, c, r.URL+"/invitations/nope"); status != 404 || !strings.Contains(body, "There is no such invitation") {
		t.Errorf("unknown code page: %d", status)
	}
}

// The plain page is rendered once per code, language and status: asked
// again it is the same bytes; once the places left change, it changes too.
func TestLandingPageFollowsTheCount(t *testing.T) {
	st := newStore(t, active("count", 5))
	r := startReplica(t, st, redeemer.Config{})
	url := r.URL + "/invitations/count?lang=en"
	_, h1, first := page(t, r.Client(), url)
	_, h2, again := page(t, r.Client(), url)
	if first != again || h1.Get("ETag") != h2.Get("ETag") || !strings.Contains(first, "5 places left") {
		t.Fatalf("the same page twice: etags %q %q", h1.Get("ETag"), h2.Get("ETag"))
	}
	if got := redeem(t, r.Client(), r.URL, "count", "p@example.com"); got.status != http.StatusCreated {
		t.Fatalf("redeem: %d", got.status)
	}
	_, h3, after := page(t, r.Client(), url)
	if !strings.Contains(after, "4 places left") || h3.Get("ETag") == h1.Get("ETag") {
		t.Fatalf("after a redemption the page says %q, etag %q", after[strings.Index(after, "places")-10:strings.Index(after, "places")+12], h3.Get("ETag"))
	}
	if _, _, ru := page(t, r.Client(), r.URL+"/invitations/count?lang=ru"); ru == after {
		t.Fatal("each language has its own page")
	}
	// A browser holding the page from before asks again with its ETag (the
	// page is max-age=0 for browsers): it gets the new count, not a 304.
	if status, _, _ := page(t, r.Client(), url, "If-None-Match", h1.Get("ETag")); status != http.StatusOK {
		t.Fatalf("revalidating the page from before the redemption: %d, want 200", status)
	}

	// Without JavaScript: the result page after the form post counts the
	// redemption it reports, and no cache keeps it.
	c := noRedirects(r.Client())
	resp := postForm(t, c, r.URL+"/invitations/count", "email=form%40example.com&lang=en")
	resp.Body.Close()
	status, h, result := page(t, c, r.URL+resp.Header.Get("Location"))
	if status != http.StatusOK || !strings.Contains(result, "You&#39;re in!") || !strings.Contains(result, "3 places left") {
		t.Fatalf("result page: %d %s", status, result)
	}
	if h.Get("Cache-Control") != "no-store" || h.Get("ETag") != "" {
		t.Fatalf("result page: Cache-Control %q, ETag %q; want no-store and none", h.Get("Cache-Control"), h.Get("ETag"))
	}
	if _, _, again := page(t, c, url); !strings.Contains(again, "3 places left") {
		t.Fatal("the plain page after the form post does not count it")
	}
}

// TestStatusURLVariesOnAccept: the page and the JSON status share GET
// /invitations/{code}, so every answer there, cacheable or not, says Vary:
// Accept; the page adds Accept-Language and Accept-Encoding.
func TestStatusURLVariesOnAccept(t *testing.T) {
	r := startReplica(t, newStore(t, active("v", 5)), redeemer.Config{})
	c := r.Client()
	_, h, _ := page(t, c, r.URL+"/invitations/v?lang=en")
	htmlAccept := "text/html"
	for _, tt := range []struct {
		method, path, accept, etag string
		status                     int
		vary                       string
	}{
		{"GET", "/invitations/v", "", "", 200, "Accept"},
		{"GET", "/invitations/v", "application/json", "", 200, "Accept"},
		{"GET", "/invitations/nope", "", "", 404, "Accept"},
		{"GET", "/invitations/Bad_Code", "", "", 404, "Accept"},
		{"HEAD", "/invitations/v", "", "", 200, "Accept"},
		{"GET", "/invitations/v?lang=en", htmlAccept, "", 200, "Accept, Accept-Language, Accept-Encoding"},
		{"GET", "/invitations/v?lang=en", htmlAccept, h.Get("ETag"), 304, "Accept, Accept-Language, Accept-Encoding"},
		{"GET", "/invitations/nope", htmlAccept, "", 404, "Accept, Accept-Language, Accept-Encoding"},
		{"HEAD", "/invitations/v", htmlAccept, "", 200, "Accept, Accept-Language, Accept-Encoding"},
	} {
		req, _ := http.NewRequest(tt.method, r.URL+tt.path, nil)
		if tt.accept != "" {
			req.Header.Set("Accept", tt.accept)
		}
		if tt.etag != "" {
			req.Header.Set("If-None-Match", tt.etag)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("Vary") != tt.vary {
			t.Errorf("%s %s (Accept %q): %d Vary %q, want %d Vary %q", tt.method, tt.path, tt.accept, resp.StatusCode, resp.Header.Get("Vary"), tt.status, tt.vary)
		}
		if tt.status == 200 && tt.accept != htmlAccept && resp.Header.Get("Cache-Control") != "public, max-age=2" {
			t.Errorf("%s %s: JSON Cache-Control %q", tt.method, tt.path, resp.Header.Get("Cache-Control"))
		}
	}
}

// TestPageWithoutGameName: with no game name configured the page names
// none, in other words rather than with a gap.
func TestPageWithoutGameName(t *testing.T) {
	r := startReplica(t, newStore(t, active("n", 5)), redeemer.Config{})
	for lang, want := range map[string]string{"en": "<h1>Join the closed beta</h1>", "ru": "<h1>Закрытый бета-тест</h1>"} {
		if _, _, body := page(t, r.Client(), r.URL+"/invitations/n?lang="+lang); !strings.Contains(body, want) {
			t.Errorf("%s: no %q in the page", lang, want)
		}
	}
}

// dataURL returns a data: URL of an image of type typ (png or gif), size
// pixels square.
func dataURL(t *testing.T, typ string, size int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	rng := rand.New(rand.NewPCG(uint64(size), 1))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.Uint32()) // noise: it does not compress away
	}
	var b bytes.Buffer
	var err error
	switch typ {
	case "png":
		err = png.Encode(&b, img)
	case "gif":
		err = gif.Encode(&b, img, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return "data:image/" + typ + ";base64," + base64.StdEncoding.EncodeToString(b.Bytes())
}

// TestDataLogo: a data: logo, which html/template alone would print as
// #ZgotmplZ, reaches the page as given once validated; the CSP allows it.
func TestDataLogo(t *testing.T) {
	logo := dataURL(t, "png", 8)
	svg := "data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString([]byte(`<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48"><circle cx="24" cy="24" r="20" fill="#2f4bb3"/></svg>`))
	st := newStore(t, active("logo", 5), invite.Invitation{Code: "svg", MaxUses: 5, State: invite.StateActive, Campaign: "vector"})
	r := startReplica(t, st, redeemer.Config{Brands: redeemer.Brands{
		Default:   redeemer.Branding{Title: "Starfall", Accent: "#aa3300", LogoURL: logo},
		Campaigns: map[string]redeemer.Branding{"vector": {LogoURL: svg}},
	}})
	for code, want := range map[string]string{"logo": logo, "svg": svg} {
		_, h, body := page(t, r.Client(), r.URL+"/invitations/"+code)
		if got := logoIn(body); got != want {
			t.Errorf("%s: the page's logo is %q, want %q", code, got, want)
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "img-src 'self' data: https:") {
			t.Errorf("%s: the CSP does not allow data: images: %s", code, h.Get("Content-Security-Policy"))
		}
	}
	if _, _, body := page(t, r.Client(), r.URL+"/invitations/logo/result?outcome=redeemed"); logoIn(body) != logo {
		t.Error("the result page lacks the logo")
	}
}

// logoIn is the URL of the page's logo as a browser reads it (html/template
// writes + as &#43; in attributes).
func logoIn(page string) string {
	m := regexp.MustCompile(`<img src="([^"]*)" alt="">`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// TestBrandingValidatesLogos: only a data: URL of an image type we name, in
// canonical base64, at most MaxLogoBytes, whose bytes are that type, is taken.
func TestBrandingValidatesLogos(t *testing.T) {
	png := dataURL(t, "png", 8)
	payload := strings.TrimPrefix(png, "data:image/png;base64,")
	svg := func(s string) string {
		return "data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString([]byte(s))
	}
	for name, tt := range map[string]struct {
		logo string
		ok   bool
	}{
		"png":                      {png, true},
		"gif":                      {dataURL(t, "gif", 8), true},
		"svg":                      {svg(`<svg xmlns="http://www.w3.org/2000/svg"/>`), true},
		"https":                    {"https://cdn.example.com/logo.png", true},
		"path":                     {"/static/logo.png", true},
		"at the cap":               {"data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString(append([]byte("<svg>"), bytes.Repeat([]byte(" "), redeemer.MaxLogoBytes-5)...)), true},
		"over the cap":             {"data:image/svg+xml;base64," + base64.StdEncoding.EncodeToString(append([]byte("<svg>"), bytes.Repeat([]byte(" "), redeemer.MaxLogoBytes-4)...)), false},
		"large png":                {dataURL(t, "png", 200), false},
		"not base64":               {"data:image/png," + payload, false},
		"broken base64":            {"data:image/png;base64,@@" + payload, false},
		"base64 with a line break": {"data:image/png;base64," + payload[:20] + "\n" + payload[20:], false},
		"unpadded":                 {"data:image/png;base64," + strings.TrimRight(payload, "="), strings.TrimRight(payload, "=") == payload},
		"bmp":                      {"data:image/bmp;base64," + payload, false},
		"html":                     {"data:text/html;base64," + base64.StdEncoding.EncodeToString([]byte("<script>alert(1)</script>")), false},
		"a type with parameters":   {"data:image/png;charset=utf-8;base64," + payload, false},
		"png that is a gif":        {"data:image/png;base64," + strings.TrimPrefix(dataURL(t, "gif", 8), "data:image/gif;base64,"), false},
		"svg that is not":          {svg("hello"), false},
		"empty":                    {"data:image/png;base64,", false},
		"javascript":               {"javascript:alert(1)", false},
		"http":                     {"http://cdn.example.com/logo.png", false},
	} {
		err := redeemer.Brands{Default: redeemer.Branding{LogoURL: tt.logo}}.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate = %v, want ok %v", name, err, tt.ok)
		}
	}
	// Links are followed, not shown: no data: URL there.
	if err := (redeemer.Brands{Default: redeemer.Branding{Links: []redeemer.Link{{Text: "x", URL: png}}}}).Validate(); err == nil {
		t.Error("a data: link is accepted")
	}
	// NewServer refuses what Validate refuses, so no page is ever built
	// from an unchecked data: URL.
	if _, err := redeemer.NewServer(redeemer.Config{Brands: redeemer.Brands{Default: redeemer.Branding{Title: "x", LogoURL: "data:image/bmp;base64,AAAA"}}}, nil, prometheus.NewRegistry(), logr.Discard()); err == nil {
		t.Error("NewServer accepts a bad data: logo")
	}
}
