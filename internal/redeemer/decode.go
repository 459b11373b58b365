package redeemer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// decodeJSON is the one way request bodies are read: a JSON media type, at
// most limit bytes, no unknown fields, exactly one JSON value. Its errors map
// to 415, 413 and 400 in the problem table.
//
// When dst is a plainDecoder, a body of up to smallBody bytes is first read
// whole and offered to it: encoding/json's decoder is the largest cost of a
// redemption answered from memory (an exhausted code's crowd), and clients
// send one spelling of the body. Any other body goes to the decoder, which
// reads the bytes already read and then the rest, and so decides exactly as
// if it had read the body itself.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	mt, err := mediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errUnsupportedMediaType
	}
	body := io.Reader(r.Body)
	if r.ContentLength < 0 || r.ContentLength > limit {
		// net/http stops a body at its declared length, so only a body
		// declared longer than limit, or not declared, needs the reader
		// that enforces it.
		body = http.MaxBytesReader(w, r.Body, limit)
	}
	if p, ok := dst.(plainDecoder); ok {
		buf := smallBodies.Get().(*[smallBody]byte)
		defer smallBodies.Put(buf)
		n, err := io.ReadFull(body, buf[:])
		if (err == io.EOF || err == io.ErrUnexpectedEOF) && p.decodePlain(buf[:n]) {
			return nil
		}
		body = io.MultiReader(bytes.NewReader(buf[:n]), body)
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err)
		}
		return malformed("the body must hold exactly one JSON value")
	}
	return nil
}

// A plainDecoder recognises the spelling of its body that clients send
// and sets itself from it exactly as decodeJSON would; it reports false,
// changing nothing, for any other body, which decodeJSON then decodes.
type plainDecoder interface {
	decodePlain(body []byte) bool
}

// smallBody is the most a plain body may hold: a redemption with the
// longest valid address is about 270 bytes.
const smallBody = 512

var smallBodies = sync.Pool{New: func() any { return new([smallBody]byte) }}

// jsonScanner walks a body whose tokens it expects, skipping JSON
// whitespace before each; a mismatch only says "not plain".
type jsonScanner struct {
	b []byte
	i int
}

func (s *jsonScanner) skipSpace() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// expect consumes tok after whitespace.
func (s *jsonScanner) expect(tok string) bool {
	s.skipSpace()
	if len(s.b)-s.i < len(tok) || string(s.b[s.i:s.i+len(tok)]) != tok {
		return false
	}
	s.i += len(tok)
	return true
}

// plainString consumes a string of printable ASCII without escapes after
// whitespace: the only strings whose decoded value is their bytes as they
// stand, whichever way encoding/json treats escapes, control characters and
// invalid UTF-8.
func (s *jsonScanner) plainString() (string, bool) {
	if !s.expect(`"`) {
		return "", false
	}
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= 0x20 && s.b[s.i] < 0x7f && s.b[s.i] != '"' && s.b[s.i] != '\\' {
		s.i++
	}
	if s.i == len(s.b) || s.b[s.i] != '"' { // the closing quote, right there
		return "", false
	}
	s.i++
	return string(s.b[start : s.i-1]), true
}

// end reports whether only whitespace is left.
func (s *jsonScanner) end() bool {
	s.skipSpace()
	return s.i == len(s.b)
}

func decodeError(err error) error {
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return errBodyTooLarge
	case errors.Is(err, io.EOF):
		return malformed("the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("the body ends in the middle of a JSON value")
	case errors.As(err, &syntax):
		return malformed(fmt.Sprintf("the body is not valid JSON (at byte %d)", syntax.Offset))
	case errors.As(err, &typ):
		return malformed(fmt.Sprintf("field %q must be a %s", typ.Field, typ.Type))
	default:
		// json reports unknown fields as `json: unknown field "x"`.
		return malformed(err.Error())
	}
}
