package redeemer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// FuzzDecodeRedeem feeds arbitrary bodies through the decoder and email
// parser. Every input must end as a valid email or as an error the problem
// table maps to a 4xx: never a panic, never a 500. decodePlain must not
// change what encoding/json would decide, whatever the body and the limit.
func FuzzDecodeRedeem(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@example.com"}`, `{"Email":"A+b@Example.com"}`, `{"email":{"$ne":null}}`,
		`{"email":"a@b.c","x":1}`, `[]`, `null`, `{"email":"a@example.com"} {}`, `{"email":"\u0000@x.y"}`,
		`{"email":"` + "\xff" + `"}`, `{"a":{"b":{"c":[[[[[[[]]]]]]]}}}`,
		` { "email" : "a@example.com" } `, "{\"email\":\"a\tb@example.com\"}", `{"email":"a\"@x.y"}`,
		`{"email":"a@example.com"`, `{"email":"a@example.com"}}`, `{"email":"a@example.com","email":"b@example.com"}`,
		`{"EMAIL":"a@example.com"}`, `{"email":"a@example.com"}` + strings.Repeat(" ", 600),
		`{"email":"abcdefgh@example.com"}`, `{"email":"abcdefghi@example.com"}`, // 32 and 33 bytes: at and over the limit below
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req redeemRequest
		err := decodeBody(body, 4096, &req)
		for _, limit := range []int64{4096, 32} {
			var plain redeemRequest
			var general generalRequest
			errPlain, errGeneral := decodeBody(body, limit, &plain), decodeBody(body, limit, &general)
			if fmt.Sprint(errPlain) != fmt.Sprint(errGeneral) || (plain.Email == nil) != (general.Email == nil) ||
				plain.Email != nil && *plain.Email != *general.Email {
				t.Fatalf("%q, limit %d: decodePlain gives %v, %v; encoding/json %v, %v",
					body, limit, deref(plain.Email), errPlain, deref(general.Email), errGeneral)
			}
			// A body sent without its length (chunked) is decided alike.
			var undeclared redeemRequest
			if err := decodeUndeclared(body, limit, &undeclared); fmt.Sprint(err) != fmt.Sprint(errPlain) ||
				deref(undeclared.Email) != deref(plain.Email) {
				t.Fatalf("%q, limit %d: without its length %v, %v; with it %v, %v",
					body, limit, deref(undeclared.Email), err, deref(plain.Email), errPlain)
			}
		}
		if err == nil {
			if req.Email == nil {
				return // the handler answers 400 "email is required"
			}
			_, err = invite.ParseEmail(*req.Email, invite.DefaultFolding)
			if err == nil {
				return
			}
		}
		for _, k := range problemTable {
			if errors.Is(err, k.err) {
				if k.status < 400 || k.status >= 500 {
					t.Fatalf("%q maps to %d", body, k.status)
				}
				return
			}
		}
		t.Fatalf("%q: error %v is not in the problem table (would be a 500)", body, err)
	})
}

// generalRequest is redeemRequest without decodePlain, so that decodeJSON
// gives every body to encoding/json.
type generalRequest struct {
	Email *string `json:"email"`
}

func decodeBody(body []byte, limit int64, dst any) error {
	r := httptest.NewRequest(http.MethodPost, "/invitations/x", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return decodeJSON(httptest.NewRecorder(), r, limit, dst)
}

// decodeUndeclared is decodeBody for a body whose length the request does
// not declare, as with chunked transfer encoding.
func decodeUndeclared(body []byte, limit int64, dst any) error {
	r := httptest.NewRequest(http.MethodPost, "/invitations/x", io.NopCloser(bytes.NewReader(body)))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/json")
	return decodeJSON(httptest.NewRecorder(), r, limit, dst)
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// TestDecodePlain: the bodies clients send skip encoding/json; anything
// else is left to it (FuzzDecodeRedeem checks the answers are the same).
func TestDecodePlain(t *testing.T) {
	for body, want := range map[string]string{
		`{"email":"player@example.com"}`:              "player@example.com",
		" {\n\t\"email\" : \"A+b@Example.com\" }\r\n": "A+b@Example.com",
		`{"email":""}`:                     "",
		`{"email":"a\u0040example.com"}`:   "-", // an escape
		`{"Email":"a@example.com"}`:        "-", // another spelling of the key
		`{"email":"ü@example.com"}`:        "-", // not ASCII
		`{"email":"a@example.com",}`:       "-",
		`{"email":"a@example.com"} {}`:     "-",
		`{"email":null}`:                   "-",
		"{\"email\":\"a\nb@example.com\"}": "-", // a control character
	} {
		var req redeemRequest
		ok := req.decodePlain([]byte(body))
		switch {
		case want == "-" && (ok || req.Email != nil):
			t.Errorf("%q: decoded as plain", body)
		case want != "-" && (!ok || req.Email == nil || *req.Email != want):
			t.Errorf("%q: plain %v, email %v; want %q", body, ok, deref(req.Email), want)
		}
	}
}
