package redeemer_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/redeemer"
)

// The benchmarks measure what the HTTP layer costs per request beyond a
// trivial handler, with a Redeemer that answers at once: the part of the
// exhausted-code and landing-page phases of make bench this package owns.

// fixedRedeemer answers every redemption with err and every status with st.
type fixedRedeemer struct {
	err error
	st  invite.PublicStatus
}

func (f fixedRedeemer) Redeem(context.Context, string, invite.Email, string) (invite.Outcome, error) {
	return 0, f.err
}
func (f fixedRedeemer) Status(string) (invite.PublicStatus, error) { return f.st, nil }
func (f fixedRedeemer) Ready() error                               { return nil }

// discardWriter is a ResponseWriter that keeps the header and the status
// only; each request gets a new one, as from net/http.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

func benchServer(b *testing.B, r redeemer.Redeemer) http.Handler {
	b.Helper()
	h, err := redeemer.NewServer(redeemer.Config{}, r, prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		b.Fatal(err)
	}
	return h
}

func serve(b *testing.B, h http.Handler, newReq func() *http.Request, want int) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, newReq())
		if w.status != want {
			b.Fatalf("status %d, want %d", w.status, want)
		}
	}
}

func exhaustedRequest() *http.Request {
	r, _ := http.NewRequest(http.MethodPost, "/invitations/gone", strings.NewReader(`{"email":"player12345@gone.example.com"}`))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func BenchmarkExhausted(b *testing.B) {
	h := benchServer(b, fixedRedeemer{err: invite.ErrExhausted})
	serve(b, h, exhaustedRequest, http.StatusGone)
}

func BenchmarkLandingPage(b *testing.B) {
	benchLandingPage(b, "")
}

// BenchmarkLandingPageGzip: as a browser asks, for the gzip encoding.
func BenchmarkLandingPageGzip(b *testing.B) {
	benchLandingPage(b, "gzip, deflate, br, zstd")
}

func benchLandingPage(b *testing.B, acceptEncoding string) {
	h := benchServer(b, fixedRedeemer{st: invite.PublicStatus{Code: "page", Campaign: "test", State: "active", Remaining: 10}})
	serve(b, h, func() *http.Request {
		r, _ := http.NewRequest(http.MethodGet, "/invitations/page", nil)
		r.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
		r.Header.Set("Accept-Language", "en")
		if acceptEncoding != "" {
			r.Header.Set("Accept-Encoding", acceptEncoding)
		}
		return r
	}, http.StatusOK)
}

// BenchmarkTrivial is make bench's baseline handler, for scale.
func BenchmarkTrivial(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	serve(b, h, exhaustedRequest, 0)
}
