package redeemer

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
)

// The cached landing page in two representations: as rendered (identity)
// and gzip-encoded, compressed once when the rendering is cached. Players are
// mostly on mobile networks; gzip makes the 6.7 KB page 2.8 KB (the
// default level: the best one saves a byte). Nothing else the redeemer answers is compressed: JSON answers are a
// few dozen bytes, and a page rendered per request (a result, an invalid
// email) would pay the compression on every request.

// representation is one encoding of a page, with its header values.
type representation struct {
	body   []byte
	etag   []string // the ETag header value, a strong validator of these bytes
	length []string // the Content-Length header value
}

func newRepresentation(body []byte) representation {
	sum := sha256.Sum256(body)
	return representation{body: body, etag: []string{`"` + hex.EncodeToString(sum[:12]) + `"`},
		length: []string{strconv.Itoa(len(body))}}
}

// gzipWriters are reused: a compress/flate writer holds several hundred KB,
// and a crowd's redemptions change the page (its count) many times.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression) // fails only for an invalid level
	return w
}}

// gzipped compresses a page. The output has no name and no modification
// time, so the same page gives the same bytes, and the same ETag, on every
// replica running the same build.
func gzipped(page []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(page) / 2)
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&b)
	zw.Write(page) // a bytes.Buffer does not fail
	zw.Close()
	return b.Bytes()
}

// acceptsGzip reports whether the Accept-Encoding field values (every line
// of the header) let the page be sent gzip-encoded (RFC 9110 12.5.3): gzip
// (or x-gzip, its alias), or else "*", listed with a weight above 0, and not
// below identity's when identity's is given ("identity", or else "*"). No
// header, an empty one, and any weight that is not a valid qvalue mean no
// gzip; the page is then sent as it is, which RFC 9110 asks for when no
// listed coding is acceptable, even if identity itself was refused.
func acceptsGzip(values []string) bool {
	gz, id, star := -1, -1, -1 // thousandths; -1: not listed
	for _, v := range values {
		for rest := v; rest != ""; {
			var entry string
			entry, rest, _ = strings.Cut(rest, ",")
			coding, params, _ := strings.Cut(entry, ";")
			q := qvalue(params)
			switch coding = strings.TrimSpace(coding); {
			case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
				gz = listed(gz, q)
			case strings.EqualFold(coding, "identity"):
				id = listed(id, q)
			case coding == "*":
				star = listed(star, q)
			}
		}
	}
	if gz < 0 {
		gz = star
	}
	if id < 0 {
		id = star
	}
	return gz > 0 && gz >= id
}

// listed merges a coding's weights when it is listed more than once: the
// lowest wins, so a refusal (q=0) is never overruled.
func listed(prev, q int) int {
	if prev < 0 {
		return q
	}
	return min(prev, q)
}

// qvalue is the weight among an Accept-Encoding entry's parameters in
// thousandths: 1000 without one, 0 for one that is not a qvalue
// ("0", "0.5", "1.000"; at most three decimals, at most 1).
func qvalue(params string) int {
	for rest := params; rest != ""; {
		var p string
		p, rest, _ = strings.Cut(rest, ";")
		name, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || (v[0] != '0' && v[0] != '1') {
			return 0
		}
		q := int(v[0]-'0') * 1000
		if len(v) > 1 {
			if v[1] != '.' || len(v) > 5 {
				return 0
			}
			scale := 100
			for _, c := range v[2:] {
				if c < '0' || c > '9' {
					return 0
				}
				q += int(c-'0') * scale
				scale /= 10
			}
		}
		if q > 1000 {
			return 0
		}
		return q
	}
	return 1000
}

// noneMatch reports whether If-None-Match field values name etag (RFC 9110
// 13.1.2): "*", or a list of entity tags compared weakly (W/ ignored), as a
// cache holding several representations may send.
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for rest := v; rest != ""; {
			var tag string
			tag, rest, _ = strings.Cut(rest, ",")
			if tag = strings.TrimSpace(tag); tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}
