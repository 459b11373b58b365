package redeemer_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/velvetrope/velvetrope/internal/redeemer"
)

// raw is what a client that decompresses nothing gets: the bytes as sent and
// every header (Go's transport drops Content-Encoding and Content-Length
// when it decompresses, and asks for gzip only when not told otherwise).
func raw(t *testing.T, method, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	given := map[string]bool{}
	for i := 0; i+1 < len(header); i += 2 {
		if given[header[i]] {
			req.Header.Add(header[i], header[i+1])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
		given[header[i]] = true
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, []byte(readAll(t, resp))
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("broken gzip: %v", err)
	}
	return out
}

// TestPageGzip: the cached page goes gzip-encoded to whoever accepts gzip,
// decodes to the very page sent to everyone else, has its own ETag, and
// revalidates in both encodings; nothing else is compressed.
func TestPageGzip(t *testing.T) {
	r := startReplica(t, newStore(t, active("zip", 5)), redeemer.Config{})
	url := r.URL + "/invitations/zip?lang=en"

	plain, identity := raw(t, "GET", url)
	zipped, gz := raw(t, "GET", url, "Accept-Encoding", "gzip, deflate, br, zstd")
	for _, c := range []struct {
		name     string
		resp     *http.Response
		body     []byte
		encoding string
	}{{"identity", plain, identity, ""}, {"gzip", zipped, gz, "gzip"}} {
		h := c.resp.Header
		if c.resp.StatusCode != 200 || h.Get("Content-Encoding") != c.encoding || h.Get("Content-Length") != strconv.Itoa(len(c.body)) ||
			h.Get("Vary") != "Accept, Accept-Language, Accept-Encoding" || h.Get("ETag") == "" || h.Get("Cache-Control") != "public, max-age=0, s-maxage=5" {
			t.Errorf("%s: %d, %d bytes, %v", c.name, c.resp.StatusCode, len(c.body), h)
		}
	}
	if got := gunzip(t, gz); !bytes.Equal(got, identity) || !bytes.Contains(identity, []byte("5 places left")) {
		t.Fatalf("the gzip page decodes to %d bytes, not the %d-byte page", len(got), len(identity))
	}
	if len(gz) >= len(identity)/2 {
		t.Errorf("gzip: %d bytes of a %d-byte page", len(gz), len(identity))
	}
	idTag, gzTag := plain.Header.Get("ETag"), zipped.Header.Get("ETag")
	if idTag == gzTag {
		t.Fatalf("both representations have ETag %s", idTag)
	}
	t.Logf("page: %d bytes, gzip %d", len(identity), len(gz))

	// Accept-Encoding as RFC 9110 12.5.3 reads it.
	for _, tt := range []struct {
		accept []string // header lines; nil: none
		gzip   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"gzip"}, true},
		{[]string{"GZip;Q=0.5"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"*"}, true},
		{[]string{"br;q=1.0, gzip;q=0.8, *;q=0.1"}, true},
		{[]string{"deflate, *;q=0.5"}, true},
		{[]string{"br", "gzip"}, true}, // two header lines are one list
		{[]string{"gzip;q=0.5, identity;q=0.5"}, true},
		{[]string{"identity, gzip"}, true},
		{[]string{"br, deflate"}, false},
		{[]string{"identity"}, false},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.000"}, false},
		{[]string{"*;q=0"}, false},
		{[]string{"gzip;q=0, *"}, false},
		{[]string{"gzip, gzip;q=0"}, false}, // a refusal is never overruled
		{[]string{"x-gzip;q=0, gzip"}, false},
		{[]string{"gzip;q=0.5, identity;q=0.8"}, false},
		{[]string{"*;q=0.5, gzip;q=0.1"}, false},
		{[]string{"gzip;q=2"}, false},
		{[]string{"gzip;q=0.5000"}, false},
		{[]string{"gzip;q=abc"}, false},
		{[]string{"gzip;q=1e0"}, false},
		// Nothing acceptable, identity refused too: the page as it is.
		{[]string{"identity;q=0, *;q=0"}, false},
		{[]string{"br, identity;q=0"}, false},
	} {
		var header []string
		for _, v := range tt.accept {
			header = append(header, "Accept-Encoding", v)
		}
		resp, body := raw(t, "GET", url, header...)
		want, wantTag := identity, idTag
		if tt.gzip {
			want, wantTag = gz, gzTag
		}
		if resp.StatusCode != 200 || (resp.Header.Get("Content-Encoding") == "gzip") != tt.gzip || !bytes.Equal(body, want) || resp.Header.Get("ETag") != wantTag {
			t.Errorf("Accept-Encoding %q: %d, Content-Encoding %q, ETag %s, %d bytes; want gzip %v",
				tt.accept, resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"), len(body), tt.gzip)
		}
	}

	// Revalidation, in each encoding: a representation's own ETag is a 304
	// (also in a list, or weak: If-None-Match compares weakly), the other's
	// is the page again.
	for _, tt := range []struct {
		name, acceptEncoding, ifNoneMatch string
		status                            int
		etag                              string
	}{
		{"gzip, its ETag", "gzip", gzTag, 304, gzTag},
		{"identity, its ETag", "", idTag, 304, idTag},
		{"gzip, the identity ETag", "gzip", idTag, 200, gzTag},
		{"identity, the gzip ETag", "", gzTag, 200, idTag},
		{"gzip, a list", "gzip", `"0123", ` + idTag + ", " + gzTag, 304, gzTag},
		{"identity, weak", "identity", "W/" + idTag, 304, idTag},
		{"gzip, any", "gzip", "*", 304, gzTag},
		{"gzip, another", "gzip", `"0123"`, 200, gzTag},
	} {
		header := []string{"If-None-Match", tt.ifNoneMatch}
		if tt.acceptEncoding != "" {
			header = append(header, "Accept-Encoding", tt.acceptEncoding)
		}
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := raw(t, method, url, header...)
			if resp.StatusCode != tt.status || resp.Header.Get("ETag") != tt.etag || resp.Header.Get("Vary") != "Accept, Accept-Language, Accept-Encoding" ||
				(tt.status == 304 || method == "HEAD") != (len(body) == 0) {
				t.Errorf("%s (%s): %d ETag %s Vary %q, %d bytes; want %d ETag %s",
					tt.name, method, resp.StatusCode, resp.Header.Get("ETag"), resp.Header.Get("Vary"), len(body), tt.status, tt.etag)
			}
		}
	}

	// HEAD says what GET would send.
	for _, ae := range []string{"gzip", "identity"} {
		get, _ := raw(t, "GET", url, "Accept-Encoding", ae)
		head, body := raw(t, "HEAD", url, "Accept-Encoding", ae)
		for _, name := range []string{"Content-Encoding", "Content-Length", "ETag", "Vary", "Cache-Control", "Content-Type"} {
			if head.Header.Get(name) != get.Header.Get(name) {
				t.Errorf("HEAD (%s): %s %q, GET says %q", ae, name, head.Header.Get(name), get.Header.Get(name))
			}
		}
		if head.StatusCode != 200 || len(body) != 0 {
			t.Errorf("HEAD (%s): %d with %d bytes", ae, head.StatusCode, len(body))
		}
	}

	// Go's client (browsers alike) asks for gzip by itself and gets the page.
	if _, h, body := page(t, r.Client(), url); body != string(identity) || h.Get("ETag") != gzTag {
		t.Errorf("Go's client: ETag %s, %d bytes", h.Get("ETag"), len(body))
	}

	// Not compressed: the JSON status, problems, pages rendered per request.
	for _, tt := range []struct{ name, path, accept string }{
		{"JSON status", "/invitations/zip", "application/json"},
		{"unknown code (problem)", "/invitations/nope", "application/json"},
		{"unknown code (page)", "/invitations/nope", "text/html"},
		{"result page", "/invitations/zip/result?outcome=redeemed&lang=en", "text/html"},
	} {
		resp, body := raw(t, "GET", r.URL+tt.path, "Accept", tt.accept, "Accept-Encoding", "gzip")
		if resp.Header.Get("Content-Encoding") != "" || len(body) == 0 || body[0] == 0x1f {
			t.Errorf("%s: Content-Encoding %q", tt.name, resp.Header.Get("Content-Encoding"))
		}
	}
}
