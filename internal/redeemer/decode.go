package redeemer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// decodeJSON is the one way request bodies are read: a JSON media type, at
// most limit bytes, no unknown fields, exactly one JSON value. Its errors map
// to 415, 413 and 400 in the problem table.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	mt, err := mediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return errUnsupportedMediaType
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
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
