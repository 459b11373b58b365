package redeemer

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// FuzzDecodeRedeem feeds arbitrary bodies through the decoder and email
// parser. Every input must end as a valid email or as an error the problem
// table maps to a 4xx: never a panic, never a 500.
func FuzzDecodeRedeem(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@example.com"}`, `{"Email":"A+b@Example.com"}`, `{"email":{"$ne":null}}`,
		`{"email":"a@b.c","x":1}`, `[]`, `null`, `{"email":"a@example.com"} {}`, `{"email":"\u0000@x.y"}`,
		`{"email":"` + "\xff" + `"}`, `{"a":{"b":{"c":[[[[[[[]]]]]]]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/invitations/x", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req redeemRequest
		err := decodeJSON(httptest.NewRecorder(), r, 4096, &req)
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
