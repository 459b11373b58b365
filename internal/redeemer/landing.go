package redeemer

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// The landing page: GET /invitations/{code} with Accept: text/html. It is
// served from memory (no MongoDB round trip), cacheable for a few seconds,
// works without JavaScript (a form POST answered with a redirect to a result
// page, so a reload never re-submits) and is enhanced by a small script.

//go:embed web/page.html
var pageSource string

//go:embed web/enhance.js
var enhanceJS string

var (
	pageTemplate = template.Must(template.New("page").Parse(pageSource))
	// The only script is ours; the Content-Security-Policy allows exactly it.
	scriptHash = func() string { s := sha256.Sum256([]byte(enhanceJS)); return base64.StdEncoding.EncodeToString(s[:]) }()
	pageCSP    = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; connect-src 'self'; " +
		"script-src 'sha256-" + scriptHash + "'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	colorRE = regexp.MustCompile(`^#[0-9a-fA-F]{3,8}$`)
)

// Branding is how a campaign's page looks.
type Branding struct {
	Title      string `json:"title"`      // the game's name
	LogoURL    string `json:"logoURL"`    // https://, a path, or a base64 data: image (validDataLogo); empty: none
	Accent     string `json:"accent"`     // button colour, #rgb or #rrggbb
	Background string `json:"background"` // page colour
	Links      []Link `json:"links"`      // shown at the bottom
}

// Link is a link at the bottom of the page.
type Link struct {
	Text string `json:"text"`
	URL  string `json:"url"`
}

// Brands is the branding of every campaign, with a default.
type Brands struct {
	Default   Branding            `json:"default"`
	Campaigns map[string]Branding `json:"campaigns"`
}

// DefaultBranding is clean and neutral. Without a title the page names no
// game ("Join the closed beta").
var DefaultBranding = Branding{Accent: "#2f4bb3", Background: "#f7f7f8"}

// Validate refuses colours and URLs that could break out of their place.
func (b Brands) Validate() error {
	for name, br := range b.Campaigns {
		if err := br.validate(); err != nil {
			return fmt.Errorf("campaign %s: %w", name, err)
		}
	}
	return b.Default.validate()
}

func (b Branding) validate() error {
	for _, c := range []string{b.Accent, b.Background} {
		if c != "" && !colorRE.MatchString(c) {
			return fmt.Errorf("colour %q: use #rgb or #rrggbb", c)
		}
	}
	if strings.HasPrefix(b.LogoURL, "data:") {
		if err := validDataLogo(b.LogoURL); err != nil {
			return fmt.Errorf("logoURL: %w", err)
		}
	} else if u := b.LogoURL; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "/") {
		return fmt.Errorf("logoURL %q: use https://, a data: image or a path", u)
	}
	for _, l := range b.Links {
		if u := l.URL; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "/") {
			return fmt.Errorf("link URL %q: use https:// or a path", u)
		}
	}
	return nil
}

// MaxLogoBytes bounds a data: logo, decoded: it is inlined in every page,
// and a replica keeps up to 256 renderings of the page.
const MaxLogoBytes = 32 << 10

// logoTypes are the image types a data: logo may have.
var logoTypes = []string{"image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"}

// validDataLogo accepts data:<type>;base64,<payload> with a type of
// logoTypes, canonical standard base64 (no spaces, padded), at most
// MaxLogoBytes decoded, and bytes that are what the type says. Only such a
// URL is marked safe for the page (logoAttr): html/template would otherwise
// print #ZgotmplZ, as it refuses every data: URL in src.
func validDataLogo(u string) error {
	meta, payload, ok := strings.Cut(strings.TrimPrefix(u, "data:"), ",")
	typ, base64ed := strings.CutSuffix(meta, ";base64")
	switch {
	case !ok || !base64ed:
		return fmt.Errorf("a data: logo must be base64 (data:image/png;base64,...)")
	case !slices.Contains(logoTypes, typ):
		return fmt.Errorf("data: logo of type %q: use one of %s", typ, strings.Join(logoTypes, ", "))
	case base64.StdEncoding.DecodedLen(len(payload)) > MaxLogoBytes+2:
		return fmt.Errorf("data: logo larger than %d bytes", MaxLogoBytes)
	}
	img, err := base64.StdEncoding.DecodeString(payload)
	switch {
	case err != nil || base64.StdEncoding.EncodeToString(img) != payload:
		return fmt.Errorf("data: logo: the payload is not canonical standard base64")
	case len(img) > MaxLogoBytes:
		return fmt.Errorf("data: logo of %d bytes: at most %d", len(img), MaxLogoBytes)
	case len(img) == 0:
		return fmt.Errorf("data: logo is empty")
	case typ == "image/svg+xml":
		if !bytes.Contains(bytes.ToLower(img), []byte("<svg")) {
			return fmt.Errorf("data: logo of type %s holds no <svg> element", typ)
		}
	case http.DetectContentType(img) != typ:
		return fmt.Errorf("data: logo of type %s holds %s", typ, http.DetectContentType(img))
	}
	return nil
}

// logoAttr is what the page's <img src> gets: a data: URL checked by
// validDataLogo when the branding was validated (NewServer refuses any
// other) marked safe, anything else as a string for html/template to
// filter as usual.
func logoAttr(u string) any {
	if strings.HasPrefix(u, "data:") {
		return template.URL(u)
	}
	return u
}

func (b Brands) forCampaign(campaign string) Branding {
	br, ok := b.Campaigns[campaign]
	if !ok {
		br = b.Default
	}
	if br.Title == "" {
		br.Title = b.Default.Title
	}
	if br.Accent == "" {
		br.Accent = b.Default.Accent
	}
	if br.Background == "" {
		br.Background = b.Default.Background
	}
	return br
}

// wantsHTML reports whether the client asked for a page: browsers put
// text/html first in Accept; API clients send JSON or */*.
func wantsHTML(r *http.Request) bool {
	for rest := r.Header.Get("Accept"); rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		switch mt, _ := mediaType(strings.TrimSpace(part)); mt {
		case "text/html", "application/xhtml+xml":
			return true
		case "application/json", "application/problem+json":
			return false
		}
	}
	return false
}

// pageLang is ?lang= when given, else the browser's preference.
func pageLang(r *http.Request) string {
	// Without a query there is nothing to parse (Query builds a map).
	if r.URL.RawQuery != "" {
		if l := r.URL.Query().Get("lang"); l == "en" || l == "ru" {
			return l
		}
	}
	return invite.PreferredLanguage(r.Header.Get("Accept-Language"))
}

// resultOf names what the page says (a key of strings2) after each outcome of
// a redemption: the two successes and every problem code. It is the form's
// result and, as msgs.codes, enhance.js's only list of codes. It names every
// row of problemTable, even those that just say "error", so a new row is a
// choice made here (TestPageMessages fails until it is).
var resultOf = map[string]string{
	"redeemed": "redeemed", "already-redeemed": "already",
	"unknown-invitation": "unknown", "invitation-exhausted": "full", "invitation-expired": "expired",
	"invitation-revoked": "revoked", "invitation-paused": "paused", "email-used-elsewhere": "elsewhere",
	"invalid-email": "invalid", "rate-limited": "busy", "busy": "busy", "unavailable": "busy",
	"malformed-request": "error", "not-found": "error", "cross-origin": "error", "method-not-allowed": "error",
	"body-too-large": "error", "unsupported-media-type": "error", "internal": "error",
}

// stateText names what the page says (a key of strings2) for each state of
// a code but active, whose text is "remaining". enhance.js gets it as
// msgs.states, to say the count again after a redemption.
var stateText = map[string]string{"paused": "paused", "exhausted": "full", "expired": "expired", "revoked": "revoked"}

type page struct {
	Lang, Code, Email, Error, Action string
	T                                map[string]string
	Brand                            Branding
	Logo                             any // logoAttr(Brand.LogoURL)
	StateText                        string
	Open                             bool
	ResultText, ResultKind           string
	Switch                           struct{ Lang, Label, URL string }
	Msgs                             map[string]any
	Script                           template.JS
}

// renderPage writes the landing page for code in lang, with an optional
// result (a key of the strings table) and a typed email with its error.
func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, code, lang, result, email, fieldError string) {
	st, err := s.redeemer.Status(code)
	if err != nil && !errors.Is(err, invite.ErrUnknownCode) {
		s.problem(w, r, err)
		return
	}
	// A crowd's first wave is GETs of the plain page: render it once per
	// code, language and status (the "places left" count included) and
	// serve the bytes.
	plain := status == http.StatusOK && result == "" && email == "" && fieldError == "" && err == nil
	if plain {
		if p, ok := s.pages.get(code, lang, st); ok {
			s.writePage(w, r, status, p)
			return
		}
	}
	t := strings2[lang]
	p := page{Lang: lang, Code: code, Email: email, Error: fieldError, T: map[string]string{}, Action: "/invitations/" + code,
		Brand: s.brands.forCampaign(st.Campaign), Script: template.JS(enhanceJS)}
	p.Logo = logoAttr(p.Brand.LogoURL)
	for k, v := range t {
		p.T[k] = strings.ReplaceAll(v, "{game}", p.Brand.Title)
	}
	if p.Brand.Title == "" {
		p.T["title"] = t["untitled"]
	}
	switch {
	case errors.Is(err, invite.ErrUnknownCode):
		status, p.StateText = http.StatusNotFound, p.T["unknown"]
	case st.State == "active":
		p.Open, p.StateText = true, strings.ReplaceAll(p.T["remaining"], "{n}", fmt.Sprint(st.Remaining))
	default:
		p.StateText = p.T[stateText[st.State]]
	}
	if result != "" {
		p.ResultText = p.T[result]
		p.ResultKind = "error"
		switch result {
		case "redeemed", "already":
			p.ResultKind, p.Open = "success", false
		case "busy", "paused":
			p.ResultKind = "info"
		}
	}
	other := map[string]string{"en": "ru", "ru": "en"}[lang]
	p.Switch.Lang, p.Switch.Label = other, strings2[other]["switch"]
	p.Switch.URL = "/invitations/" + url.PathEscape(code) + "?lang=" + other
	msgs := map[string]any{"codes": resultOf, "states": stateText}
	for k, v := range p.T {
		msgs[k] = v
	}
	p.Msgs = msgs

	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, p); err != nil {
		s.problem(w, r, err)
		return
	}
	if !plain {
		// A result page answers one person's form post: its count must be
		// the one after their redemption, so no cache keeps it.
		s.writePage(w, r, status, renderedPage{identity: representation{body: b.Bytes(), length: []string{strconv.Itoa(b.Len())}}})
		return
	}
	page := renderedPage{status: st, identity: newRepresentation(b.Bytes()), gzip: newRepresentation(gzipped(b.Bytes()))}
	s.pages.put(code, lang, page)
	s.writePage(w, r, status, page)
}

// writePage writes a rendered page. A plain page (one with an ETag, which
// holds nothing personal) is cacheable, and goes gzip-encoded to clients
// that accept it; any other is no-store and sent as it is.
func (s *Server) writePage(w http.ResponseWriter, r *http.Request, status int, p renderedPage) {
	h := w.Header()
	h[hContentType] = textHTML
	h[hCSP] = pageCSPValue
	h[hContentTypeOptions] = nosniff
	h[hReferrerPolicy] = noReferrer
	h[hVary] = varyPage
	rep, encoded := p.identity, false
	if p.gzip.body != nil && acceptsGzip(r.Header[hAcceptEncoding]) {
		rep, encoded = p.gzip, true
	}
	if rep.etag != nil {
		// The page holds nothing personal: a few seconds in shared caches
		// (s-maxage) let CDNs absorb a crowd. A browser revalidates every
		// time (max-age=0; the ETag makes that a 304 from memory), so a
		// player who reloads after redeeming sees the count that includes
		// them, not their browser's copy from before. Each representation
		// has its own strong ETag (RFC 9110 8.8.3), so a 304 confirms
		// exactly the bytes the client holds.
		h[hCacheControl] = pageCacheControl
		h[hETag] = rep.etag
		if noneMatch(r.Header[hIfNoneMatch], rep.etag[0]) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	} else {
		h[hCacheControl] = noStore
	}
	if encoded {
		h[hContentEncoding] = gzipEncoding
	}
	h[hContentLength] = rep.length
	w.WriteHeader(status)
	w.Write(rep.body)
}

// pageCache keeps the latest rendering of the plain page per code and
// language, for the codes asked for most recently (a bounded number, so
// thousands of codes do not cost a page each).
type pageCache struct {
	mu    sync.Mutex
	pages *simplelru.LRU[pageKey, renderedPage]
}

type pageKey struct{ code, lang string }

type renderedPage struct {
	status         invite.PublicStatus
	identity, gzip representation // gzip: no body for a page rendered per request
}

// cachedPages bounds pageCache: a page is about 10 KiB, and its gzip
// encoding less than half of that.
const cachedPages = 256

func newPageCache() *pageCache {
	lru, _ := simplelru.NewLRU[pageKey, renderedPage](cachedPages, nil) // fails only for a size below 1
	return &pageCache{pages: lru}
}

func (c *pageCache) get(code, lang string, st invite.PublicStatus) (renderedPage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pages.Get(pageKey{code, lang})
	return p, ok && p.status == st
}

func (c *pageCache) put(code, lang string, p renderedPage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pages.Add(pageKey{code, lang}, p)
}

// handleForm is the redemption without JavaScript: a form POST, answered
// with 303 to the result page (Post/Redirect/Get), or with the page again and
// the typed email when it is invalid. Cross-site form posts are refused
// (CSRF): browsers say where a request comes from (Sec-Fetch-Site, Origin).
func (s *Server) handleForm(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	if err := s.csrf.Check(r); err != nil {
		s.problem(w, r, errCrossOrigin)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		s.problem(w, r, decodeError(err))
		return
	}
	lang := r.PostForm.Get("lang")
	if lang != "en" && lang != "ru" {
		lang = pageLang(r)
	}
	raw := r.PostForm.Get("email")
	if !invite.ValidCode(code) {
		s.renderPage(w, r, http.StatusNotFound, code, lang, "", "", "")
		return
	}
	email, err := invite.ParseEmail(raw, *s.cfg.Folding)
	if err != nil {
		s.metrics.outcome(err)
		s.renderPage(w, r, http.StatusBadRequest, code, lang, "", raw, strings2[lang]["invalid"])
		return
	}
	out, err := s.redeemer.Redeem(r.Context(), code, email, lang)
	outcome := "redeemed"
	switch {
	case err != nil:
		k, _ := kindOf(err)
		outcome = k.code
	case out == invite.AlreadyRedeemed:
		outcome = "already-redeemed"
	}
	s.metrics.result(outcome)
	http.Redirect(w, r, "/invitations/"+url.PathEscape(code)+"/result?outcome="+resultOf[outcome]+"&lang="+lang, http.StatusSeeOther)
}

// handleResult shows the outcome of a form POST; reloading it re-submits
// nothing.
func (s *Server) handleResult(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	result := r.URL.Query().Get("outcome")
	if !slices.Contains(slices.Collect(maps.Values(resultOf)), result) {
		result = "" // only a result the form can redirect to
	}
	status := http.StatusOK
	if !invite.ValidCode(code) {
		status = http.StatusNotFound
	}
	s.renderPage(w, r, status, code, pageLang(r), result, "", "")
}
