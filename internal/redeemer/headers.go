package redeemer

import (
	"mime"
	"strings"
)

// Header names and the values set on most answers, as the []string
// http.Header holds. Header.Set allocates a new slice per call, and every
// request sets several of these; assigning a shared slice does not. That is
// safe because nothing changes a header value in place: Set and Del replace
// the slice, and Add appends to a full one, which copies. The names are in
// canonical form, as direct assignment needs (textproto.CanonicalMIMEHeaderKey;
// "Etag", not "ETag").
const (
	hAcceptEncoding     = "Accept-Encoding"
	hCacheControl       = "Cache-Control"
	hContentEncoding    = "Content-Encoding"
	hContentLength      = "Content-Length"
	hContentType        = "Content-Type"
	hContentTypeOptions = "X-Content-Type-Options"
	hCSP                = "Content-Security-Policy"
	hETag               = "Etag"
	hIfNoneMatch        = "If-None-Match"
	hReferrerPolicy     = "Referrer-Policy"
	hVary               = "Vary"
)

var (
	applicationJSON = []string{"application/json"}
	problemJSON     = []string{"application/problem+json"}
	textHTML        = []string{"text/html; charset=utf-8"}
	noStore         = []string{"no-store"}
	nosniff         = []string{"nosniff"}
	noReferrer      = []string{"no-referrer"}
	varyAccept      = []string{"Accept"}
	// varyPage: the page also depends on the language, and the cached
	// page is sent gzip-encoded or not by Accept-Encoding (pagecoding.go).
	varyPage     = []string{"Accept, Accept-Language, Accept-Encoding"}
	gzipEncoding = []string{"gzip"}
	pageCSPValue = []string{pageCSP}
	// pageCacheControl: see writePage.
	pageCacheControl = []string{"public, max-age=0, s-maxage=5"}
)

// mediaType returns what mime.ParseMediaType returns for v but its
// parameters: the media type, lower-cased ("" when v has none), and the error.
// The values the server tells apart, sent without parameters, skip the
// parser, which builds a map for every call: that is every redemption's
// Content-Type and the first entry of a browser's Accept.
func mediaType(v string) (string, error) {
	if !strings.Contains(v, ";") {
		switch mt := strings.TrimSpace(strings.ToLower(v)); mt {
		case "application/json", "application/problem+json", "application/x-www-form-urlencoded",
			"text/html", "application/xhtml+xml":
			return mt, nil
		}
	}
	mt, _, err := mime.ParseMediaType(v)
	return mt, err
}
