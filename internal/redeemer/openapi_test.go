package redeemer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/claim"
	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/redeemer"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// openAPIDoc is the contract users load: docs/openapi.yaml.
const openAPIDoc = "../../docs/openapi.yaml"

// contract validates exchanges with a real server against the document
// and remembers which of its responses they exercised.
type contract struct {
	doc    *openapi3.T
	router routers.Router
	opts   *openapi3filter.Options

	mu       sync.Mutex
	seen     map[string]bool // responseKey of every answer validated
	problems map[string]bool // problem codes answered
}

func loadContract(t *testing.T) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIDoc)
	if err != nil {
		t.Fatalf("%s: %v", openAPIDoc, err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("%s is OpenAPI %s; the contract is 3.1", openAPIDoc, doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s is not a valid OpenAPI document: %v", openAPIDoc, err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	// The page is HTML; kin-openapi decodes text/plain, not text/html.
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	return &contract{doc: doc, router: router, seen: map[string]bool{}, problems: map[string]bool{},
		opts: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
}

// responseKey names one documented response of an operation, per media type
// ("" for a response without content).
func responseKey(method, path string, status int, media string) string {
	return fmt.Sprintf("%s %s %d %s", method, path, status, media)
}

// documented lists every response of every operation in the document, with
// the problem codes its schemas allow, and the components' responses.
func (c *contract) documented() (responses []string, problems []string) {
	for path, item := range c.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for code, ref := range op.Responses.Map() {
				var status int
				fmt.Sscan(code, &status)
				if len(ref.Value.Content) == 0 {
					responses = append(responses, responseKey(method, path, status, ""))
				}
				for media := range ref.Value.Content {
					responses = append(responses, responseKey(method, path, status, media))
				}
			}
		}
	}
	for name, s := range c.doc.Components.Schemas {
		if code := problemCode(s.Value); code != "" {
			problems = append(problems, code)
		} else if strings.HasSuffix(name, "Problem") && name != "Problem" {
			problems = append(problems, "schema "+name+" without a code")
		}
	}
	slices.Sort(responses)
	slices.Sort(problems)
	return responses, problems
}

// problemCode is the code a problem type's schema fixes, or "".
func problemCode(s *openapi3.Schema) string {
	if p := s.Properties["code"]; p != nil && p.Value != nil {
		if code, ok := p.Value.Const.(string); ok {
			return code
		}
	}
	return ""
}

// exchange is one request to a server and what the test expects of it.
type exchange struct {
	name         string
	method, path string
	header       []string // name, value, ...
	body         string
	status       int    // 0: any the document allows
	problem      string // the problem code answered, if any
	invalid      bool   // the document refuses the request too
	unrouted     bool   // a path the document does not list: answered as components/responses/NotFound
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends x to base and checks the request and the answer against the
// document. Safe for concurrent use.
func (c *contract) do(t *testing.T, client *http.Client, base string, x exchange) answer {
	t.Helper()
	newRequest := func() *http.Request {
		req, err := http.NewRequest(x.method, base+x.path, strings.NewReader(x.body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(x.header); i += 2 {
			req.Header.Set(x.header[i], x.header[i+1])
		}
		return req
	}
	resp, err := client.Do(newRequest())
	if err != nil {
		t.Errorf("%s: %v", x.name, err)
		return answer{}
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Errorf("%s: reading the answer: %v", x.name, err)
	}
	got := answer{resp.StatusCode, resp.Header, body}
	if x.status != 0 && got.status != x.status {
		t.Errorf("%s: status %d, want %d: %s", x.name, got.status, x.status, body)
	}
	var problem struct{ Code string }
	if got.header.Get("Content-Type") == "application/problem+json" {
		json.Unmarshal(body, &problem)
		c.mu.Lock()
		c.problems[problem.Code] = true
		c.mu.Unlock()
	}
	if x.status != 0 && problem.Code != x.problem {
		t.Errorf("%s: problem %q, want %q", x.name, problem.Code, x.problem)
	}

	req := newRequest()
	if x.unrouted {
		// (kin-openapi's router would take a trailing slash for
		// /invitations/{code}; the redeemer does not.)
		c.checkNotFound(t, x.name, got)
		return got
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		t.Errorf("%s: %s %s is not in the document: %v", x.name, x.method, x.path, err)
		return got
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: c.opts}
	switch err := openapi3filter.ValidateRequest(context.Background(), in); {
	case err != nil && !x.invalid:
		t.Errorf("%s: the document refuses the request: %v", x.name, err)
	case err == nil && x.invalid:
		t.Errorf("%s: the document accepts a request the test calls invalid", x.name)
	}
	ref := route.Operation.Responses.Status(got.status)
	if ref == nil {
		t.Errorf("%s: %s %s does not document status %d", x.name, route.Method, route.Path, got.status)
		return got
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: got.status, Header: got.header,
		Body: io.NopCloser(bytes.NewReader(body)), Options: c.opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: the answer does not match the document: %v", x.name, err)
	}
	media := ""
	if mt := ref.Value.Content.Get(got.header.Get("Content-Type")); mt != nil && x.method != http.MethodHead {
		for k, v := range ref.Value.Content {
			if v == mt {
				media = k
			}
		}
	} else if len(ref.Value.Content) > 0 && x.method != http.MethodHead && got.status != http.StatusNotModified {
		t.Errorf("%s: content type %q is not documented for %d", x.name, got.header.Get("Content-Type"), got.status)
	}
	c.mu.Lock()
	c.seen[responseKey(route.Method, route.Path, got.status, media)] = true
	c.mu.Unlock()
	return got
}

// checkNotFound holds an answer to a path the document does not list to
// components/responses/NotFound.
func (c *contract) checkNotFound(t *testing.T, name string, got answer) {
	t.Helper()
	ref := c.doc.Components.Responses["NotFound"]
	if ref == nil {
		t.Fatal("the document has no components/responses/NotFound")
	}
	mt := ref.Value.Content.Get(got.header.Get("Content-Type"))
	if got.status != http.StatusNotFound || mt == nil {
		t.Errorf("%s: %d %s, want 404 as components/responses/NotFound", name, got.status, got.header.Get("Content-Type"))
		return
	}
	var v any
	if err := json.Unmarshal(got.body, &v); err != nil {
		t.Errorf("%s: %v", name, err)
	}
	if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("%s: the answer does not match components/responses/NotFound: %v", name, err)
	}
	for h, hdr := range ref.Value.Headers {
		if hdr.Value.Required && got.header.Get(h) == "" {
			t.Errorf("%s: no %s header", name, h)
		}
	}
	c.mu.Lock()
	c.seen["NotFound"] = true
	c.mu.Unlock()
}

// TestOpenAPIContract drives real redeemers (the claim service over the
// FerretDB test bed) through every answer docs/openapi.yaml documents, and
// validates each request and answer against it with kin-openapi's
// openapi3filter. It fails when a documented answer was never given, so a
// response added to the document needs a way to produce it here.
func TestOpenAPIContract(t *testing.T) {
	c := loadContract(t)

	paused, expired, revoked := active("hold", 5), active("old", 5), active("gone", 5)
	paused.State, revoked.State = invite.StatePaused, invite.StateRevoked
	expired.ExpiresAt = time.Now().Add(-time.Hour)
	st := newStore(t, active("twitter-reg1", 2), active("other", 5), active("crowd", 100), paused, expired, revoked)
	faults := &testbed.Faults{Store: st}
	// One redemption at a time may wait for storage: a second one at once
	// is shed (503 busy).
	srv := startReplica(t, faults, redeemer.Config{}, func(c *claim.Config) { c.MaxPending, c.AdmissionWait = 1, time.Nanosecond })
	client := noRedirects(srv.Client())

	jsonCT, form := "application/json", "application/x-www-form-urlencoded"
	html := "text/html,application/xhtml+xml,*/*;q=0.8"
	ct := func(v string) []string { return []string{"Content-Type", v} }
	steps := []exchange{
		{name: "new redemption", method: "POST", path: "/invitations/twitter-reg1", header: ct(jsonCT), body: `{"email":"ann@example.com"}`, status: 201},
		{name: "same person again", method: "POST", path: "/invitations/twitter-reg1", header: ct(jsonCT), body: `{"email":"Ann+again@Example.com"}`, status: 200},
		{name: "same person, other code", method: "POST", path: "/invitations/other", header: ct(jsonCT), body: `{"email":"ann@example.com"}`, status: 409, problem: "email-used-elsewhere"},
		{name: "last place", method: "POST", path: "/invitations/twitter-reg1", header: []string{"Content-Type", jsonCT + "; charset=utf-8", "Accept-Language", "ru"}, body: `{"email":"bob@example.com"}`, status: 201},
		{name: "full", method: "POST", path: "/invitations/twitter-reg1", header: ct(jsonCT), body: `{"email":"carol@example.com"}`, status: 410, problem: "invitation-exhausted"},
		{name: "paused", method: "POST", path: "/invitations/hold", header: ct(jsonCT), body: `{"email":"carol@example.com"}`, status: 423, problem: "invitation-paused"},
		{name: "expired", method: "POST", path: "/invitations/old", header: ct(jsonCT), body: `{"email":"carol@example.com"}`, status: 410, problem: "invitation-expired"},
		{name: "revoked", method: "POST", path: "/invitations/gone", header: ct(jsonCT), body: `{"email":"carol@example.com"}`, status: 410, problem: "invitation-revoked"},
		{name: "unknown code", method: "POST", path: "/invitations/nope", header: ct(jsonCT), body: `{"email":"carol@example.com"}`, status: 404, problem: "unknown-invitation"},
		{name: "code that cannot exist", method: "POST", path: "/invitations/Not_A_Code", header: ct(jsonCT), body: `{"email":"carol@example.com"}`, status: 404, problem: "unknown-invitation", invalid: true},
		{name: "invalid email", method: "POST", path: "/invitations/other", header: ct(jsonCT), body: `{"email":"not an email"}`, status: 400, problem: "invalid-email"},
		{name: "no email", method: "POST", path: "/invitations/other", header: ct(jsonCT), body: `{}`, status: 400, problem: "malformed-request", invalid: true},
		{name: "unknown field", method: "POST", path: "/invitations/other", header: ct(jsonCT), body: `{"email":"d@example.com","admin":true}`, status: 400, problem: "malformed-request", invalid: true},
		{name: "email not a string", method: "POST", path: "/invitations/other", header: ct(jsonCT), body: `{"email":{"$gt":""}}`, status: 400, problem: "malformed-request", invalid: true},
		{name: "broken JSON", method: "POST", path: "/invitations/other", header: ct(jsonCT), body: `{"email":`, status: 400, problem: "malformed-request", invalid: true},
		{name: "not JSON", method: "POST", path: "/invitations/other", header: ct("text/plain"), body: `{"email":"d@example.com"}`, status: 415, problem: "unsupported-media-type", invalid: true},
		{name: "too large", method: "POST", path: "/invitations/other", header: ct(jsonCT), body: `{"email":"` + strings.Repeat("a", 5000) + `@example.com"}`, status: 413, problem: "body-too-large", invalid: true},

		{name: "form post", method: "POST", path: "/invitations/other", header: ct(form), body: "email=form.player%40example.com&lang=en", status: 303},
		{name: "form post, invalid email", method: "POST", path: "/invitations/other", header: ct(form), body: "email=nope&lang=en", status: 400},
		{name: "form post, impossible code", method: "POST", path: "/invitations/Nope", header: ct(form), body: "email=x%40example.com&lang=en", status: 404, invalid: true},
		{name: "form post from another site", method: "POST", path: "/invitations/other",
			header: []string{"Content-Type", form, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, body: "email=victim%40example.com", status: 403, problem: "cross-origin"},
		{name: "result page", method: "GET", path: "/invitations/other/result?outcome=redeemed&lang=en", status: 200},
		{name: "result page, unknown code", method: "GET", path: "/invitations/nope/result?outcome=redeemed&lang=en", status: 404},

		{name: "status", method: "GET", path: "/invitations/other", header: []string{"Accept", "application/json"}, status: 200},
		{name: "status, any type", method: "GET", path: "/invitations/other", status: 200},
		{name: "status, unknown code", method: "GET", path: "/invitations/nope", status: 404, problem: "unknown-invitation"},
		{name: "status, impossible code", method: "GET", path: "/invitations/a--", status: 404, problem: "unknown-invitation", invalid: true},
		{name: "page", method: "GET", path: "/invitations/other?lang=ru", header: []string{"Accept", html}, status: 200},
		{name: "page, gzip", method: "GET", path: "/invitations/other?lang=ru", header: []string{"Accept", html, "Accept-Encoding", "gzip, deflate, br, zstd"}, status: 200},
		{name: "page, gzip refused", method: "GET", path: "/invitations/other?lang=ru", header: []string{"Accept", html, "Accept-Encoding", "gzip;q=0"}, status: 200},
		{name: "page of an unknown code", method: "GET", path: "/invitations/nope", header: []string{"Accept", html}, status: 404},
		{name: "HEAD status", method: "HEAD", path: "/invitations/other", status: 200},
		{name: "HEAD page", method: "HEAD", path: "/invitations/other", header: []string{"Accept", html}, status: 200},
		{name: "HEAD page, gzip", method: "HEAD", path: "/invitations/other", header: []string{"Accept", html, "Accept-Encoding", "gzip"}, status: 200},
		{name: "HEAD unknown", method: "HEAD", path: "/invitations/nope", status: 404},

		{name: "healthz", method: "GET", path: "/healthz", status: 200},
		{name: "readyz", method: "GET", path: "/readyz", status: 200},

		{name: "no such route", method: "GET", path: "/admin", status: 404, problem: "not-found", unrouted: true},
		{name: "metrics have their own listener", method: "GET", path: "/metrics", status: 404, problem: "not-found", unrouted: true},
		{name: "dot segments", method: "POST", path: "/invitations/../invitations/other", header: ct(jsonCT), body: `{"email":"e@example.com"}`, status: 404, problem: "not-found", unrouted: true},
		{name: "trailing slash", method: "POST", path: "/invitations/other/", header: ct(jsonCT), body: `{"email":"e@example.com"}`, status: 404, problem: "not-found", unrouted: true},
		{name: "POST on a probe", method: "POST", path: "/healthz", status: 404, problem: "not-found", unrouted: true},
	}
	for _, m := range []string{"PUT", "PATCH", "DELETE", "OPTIONS"} {
		steps = append(steps, exchange{name: m, method: m, path: "/invitations/other", status: 405, problem: "method-not-allowed"})
	}
	for _, x := range steps {
		got := c.do(t, client, srv.URL, x)
		if x.status == 405 && got.header.Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("%s: Allow %q", x.name, got.header.Get("Allow"))
		}
	}

	// 304: the page again with its ETag, by GET and by HEAD, gzip-encoded
	// and not.
	for _, enc := range []string{"gzip", "identity"} {
		page := c.do(t, client, srv.URL, exchange{name: "page for its ETag, " + enc, method: "GET", path: "/invitations/other?lang=en",
			header: []string{"Accept", html, "Accept-Encoding", enc}, status: 200})
		if got := page.header.Get("Content-Encoding"); got != map[string]string{"gzip": "gzip"}[enc] {
			t.Errorf("page, Accept-Encoding %s: Content-Encoding %q", enc, got)
		}
		for _, m := range []string{"GET", "HEAD"} {
			c.do(t, client, srv.URL, exchange{name: m + " revalidated, " + enc, method: m, path: "/invitations/other?lang=en",
				header: []string{"Accept", html, "Accept-Encoding", enc, "If-None-Match", page.header.Get("ETag")}, status: 304})
		}
	}

	// 503 busy: while storage hangs, the one place for a redemption is
	// taken by the first of a crowd, and the others are shed at once.
	faults.Hold()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range 4 {
		wg.Go(func() {
			got := c.do(t, client, srv.URL, exchange{name: fmt.Sprintf("crowd %d", i), method: "POST", path: "/invitations/crowd",
				header: ct(jsonCT), body: fmt.Sprintf(`{"email":"crowd%d@example.com"}`, i)}) // 201 or 503 busy
			mu.Lock()
			statuses[got.status]++
			mu.Unlock()
		})
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		shed := statuses[503]
		mu.Unlock()
		if shed == 3 || time.Now().After(deadline) {
			break
		}
	}
	faults.Release()
	wg.Wait()
	if statuses[503] != 3 || statuses[201] != 1 || !c.problems["busy"] {
		t.Errorf("a crowd of 4 with one place: %v, want three 503 busy and one 201", statuses)
	}

	// 500: a storage error nobody classified is a bug, answered without
	// details.
	faults.FailNextClaim(errors.New("injected: an unclassified error"), false)
	c.do(t, client, srv.URL, exchange{name: "a bug", method: "POST", path: "/invitations/crowd", header: ct(jsonCT), body: `{"email":"bug@example.com"}`, status: 500, problem: "internal"})

	// 429: a replica that allows one redemption request per minute.
	limited := startReplica(t, newStore(t, active("a", 5)), redeemer.Config{RateLimit: 1, RateInterval: time.Minute})
	c.do(t, limited.Client(), limited.URL, exchange{name: "first request", method: "POST", path: "/invitations/a", header: ct(jsonCT), body: `{"email":"f@example.com"}`, status: 201})
	c.do(t, limited.Client(), limited.URL, exchange{name: "second request", method: "POST", path: "/invitations/a", header: ct(jsonCT), body: `{"email":"g@example.com"}`, status: 429, problem: "rate-limited"})

	// 503 unavailable: a replica that has not loaded the invitations yet.
	loading := claim.New(newStore(t, active("a", 5)), claim.Config{}, logr.Discard())
	h, err := redeemer.NewServer(redeemer.Config{}, loading, prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	cold := httptest.NewServer(h)
	defer cold.Close()
	for _, x := range []exchange{
		{name: "redeem while loading", method: "POST", path: "/invitations/a", header: ct(jsonCT), body: `{"email":"h@example.com"}`, status: 503, problem: "unavailable"},
		{name: "status while loading", method: "GET", path: "/invitations/a", status: 503, problem: "unavailable"},
		{name: "page while loading", method: "GET", path: "/invitations/a", header: []string{"Accept", html}, status: 503, problem: "unavailable"},
		{name: "HEAD while loading", method: "HEAD", path: "/invitations/a", status: 503},
		{name: "result page while loading", method: "GET", path: "/invitations/a/result?outcome=redeemed&lang=en", status: 503, problem: "unavailable"},
		{name: "not ready while loading", method: "GET", path: "/readyz", status: 503},
	} {
		c.do(t, cold.Client(), cold.URL, x)
	}

	// Draining: not ready, still serving.
	srv.handler.Drain()
	c.do(t, client, srv.URL, exchange{name: "not ready while draining", method: "GET", path: "/readyz", status: 503})

	responses, problems := c.documented()
	for _, k := range append(responses, "NotFound") {
		if !c.seen[k] {
			t.Errorf("documented but never answered: %s", k)
		}
	}
	for _, code := range problems {
		if !c.problems[code] {
			t.Errorf("problem type %s is documented but was never answered", code)
		}
	}
	t.Logf("%d documented responses and %d problem types answered and validated", len(responses)+1, len(problems))
}

func noRedirects(c *http.Client) *http.Client {
	cc := *c
	cc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cc
}
