package redeemer_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

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
		h.Get("Cache-Control") != "public, max-age=5" || h.Get("ETag") == "" {
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
}
