package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/loadgen"
)

// TestSlowClientsAreBounded: slowloris connections (headers dribbled in) and
// a stalled body are cut by the server's timeouts, an oversized body gets 413
// without being read, and meanwhile ordinary players are served normally.
func TestSlowClientsAreBounded(t *testing.T) {
	e := newEnv(t, active("slow", 1000))
	r := e.redeemer("--read-header-timeout", "500ms", "--read-timeout", "1s")

	// 50 slowloris connections: one header byte every 100ms.
	var wg sync.WaitGroup
	cut := make(chan time.Duration, 50)
	for range 50 {
		wg.Go(func() {
			conn, err := net.Dial("tcp", r.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			start := time.Now()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			for _, b := range []byte("POST /invitations/slow HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 200)) {
				if _, err := conn.Write([]byte{b}); err != nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			io.Copy(io.Discard, conn) // returns when the server hangs up
			cut <- time.Since(start)
		})
	}

	// A stalled body: headers promise 100 bytes, 10 arrive.
	stalled := make(chan time.Duration, 1)
	go func() {
		conn, err := net.Dial("tcp", r.Addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		start := time.Now()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST /invitations/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
		io.Copy(io.Discard, conn)
		stalled <- time.Since(start)
	}()

	// Ordinary players meanwhile.
	res := loadgen.Run(context.Background(), loadgen.Config{
		Targets: []string{"http://" + r.Addr}, Codes: []string{"slow"}, Requests: 300, Concurrency: 8, Email: mix.Email,
	})
	for status, n := range res.Statuses {
		if status == 0 || status >= 500 {
			t.Errorf("%d ordinary requests got %d while slow clients held connections", n, status)
		}
	}
	audit(t, e, []string{"slow"}, res)

	// Oversized: 413 at once, nothing stored.
	big := `{"email":"` + strings.Repeat("a", 1<<20) + `@example.com"}`
	resp, err := http.Post("http://"+r.Addr+"/invitations/slow", "application/json", strings.NewReader(big))
	if err == nil {
		resp.Body.Close()
	}
	if err == nil && resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB body: %d, want 413", resp.StatusCode)
	}

	wg.Wait()
	close(cut)
	for d := range cut {
		if d > 5*time.Second { // a bound on what a slow client holds, not a speed target
			t.Errorf("a slowloris connection was held %v; the header timeout is 500ms", d)
		}
	}
	if d := <-stalled; d > 5*time.Second {
		t.Errorf("a stalled body was held %v; the read timeout is 1s", d)
	}
}

// TestHostileInputSweep sends requests an attacker (or a broken client)
// would: each gets its documented 4xx, and MongoDB is left unchanged.
func TestHostileInputSweep(t *testing.T) {
	e := newEnv(t, active("hostile", 10))
	r := e.redeemer()
	base := "http://" + r.Addr
	deep := strings.Repeat("[", 1500) + strings.Repeat("]", 1500) // deep, yet under the 4 KiB limit
	sweep := []struct {
		name, method, path, contentType, body string
		status                                int
		problem                               string
	}{
		{"not JSON", "POST", "/invitations/hostile", "application/json", `email=a@b.co`, 400, "malformed-request"},
		{"deeply nested JSON", "POST", "/invitations/hostile", "application/json", `{"email":` + deep + `}`, 400, "malformed-request"},
		{"nested email object", "POST", "/invitations/hostile", "application/json", `{"email":{"email":{"email":"a@b.co"}}}`, 400, "malformed-request"},
		{"operator as email", "POST", "/invitations/hostile", "application/json", `{"email":{"$ne":null}}`, 400, "malformed-request"},
		{"operator as field", "POST", "/invitations/hostile", "application/json", `{"email":"a@b.co","$where":"sleep(1000)"}`, 400, "malformed-request"},
		{"dotted key", "POST", "/invitations/hostile", "application/json", `{"email.x":"a@b.co"}`, 400, "malformed-request"},
		{"array body", "POST", "/invitations/hostile", "application/json", `[{"email":"a@b.co"}]`, 400, "malformed-request"},
		{"null", "POST", "/invitations/hostile", "application/json", `null`, 400, "malformed-request"},
		{"huge number", "POST", "/invitations/hostile", "application/json", `{"email":1e999999}`, 400, "malformed-request"},
		{"invalid UTF-8", "POST", "/invitations/hostile", "application/json", "{\"email\":\"\xff\xfe@b.co\"}", 400, "invalid-email"},
		{"control characters", "POST", "/invitations/hostile", "application/json", `{"email":"a\u0000b@b.co"}`, 400, "invalid-email"},
		{"header injection", "POST", "/invitations/hostile", "application/json", `{"email":"a@b.co\r\nBcc: all@b.co"}`, 400, "invalid-email"},
		{"right-to-left override", "POST", "/invitations/hostile", "application/json", `{"email":"\u202eoc.b@a"}`, 400, "invalid-email"},
		{"zero-width joiner", "POST", "/invitations/hostile", "application/json", `{"email":"a\u200db@b.co"}`, 400, "invalid-email"},
		{"IDN without a dot", "POST", "/invitations/hostile", "application/json", `{"email":"a@пример"}`, 400, "invalid-email"},
		{"broken punycode", "POST", "/invitations/hostile", "application/json", `{"email":"a@xn--.com"}`, 400, "invalid-email"},
		{"display name", "POST", "/invitations/hostile", "application/json", `{"email":"Eve <eve@b.co>"}`, 400, "invalid-email"},
		{"two ats", "POST", "/invitations/hostile", "application/json", `{"email":"a@b@b.co"}`, 400, "invalid-email"},
		{"operator as code", "POST", "/invitations/$where", "application/json", `{"email":"a@b.co"}`, 404, "unknown-invitation"},
		{"regex as code", "POST", "/invitations/.*", "application/json", `{"email":"a@b.co"}`, 404, "unknown-invitation"},
		{"dotted code", "POST", "/invitations/hostile.x", "application/json", `{"email":"a@b.co"}`, 404, "unknown-invitation"},
		{"upper-case code", "POST", "/invitations/HOSTILE", "application/json", `{"email":"a@b.co"}`, 404, "unknown-invitation"},
		{"very long code", "POST", "/invitations/" + strings.Repeat("a", 1000), "application/json", `{"email":"a@b.co"}`, 404, "unknown-invitation"},
		{"encoded traversal", "POST", "/invitations/..%2F..%2Fadmin", "application/json", `{"email":"a@b.co"}`, 404, "not-found"},
		{"dot segments", "POST", "/invitations/../../etc/passwd", "application/json", `{"email":"a@b.co"}`, 404, "not-found"},
		{"double slash", "POST", "//invitations/hostile", "application/json", `{"email":"a@b.co"}`, 404, "not-found"},
		{"PUT", "PUT", "/invitations/hostile", "application/json", `{"email":"a@b.co"}`, 405, "method-not-allowed"},
		{"DELETE", "DELETE", "/invitations/hostile", "", ``, 405, "method-not-allowed"},
		{"PATCH", "PATCH", "/invitations/hostile", "application/json", `{"email":"a@b.co"}`, 405, "method-not-allowed"},
		{"cross-site form", "POST", "/invitations/hostile", "application/x-www-form-urlencoded", `email=a%40b.co`, 403, "cross-origin"},
		{"multipart", "POST", "/invitations/hostile", "multipart/form-data; boundary=x", "--x\r\n\r\na@b.co\r\n--x--", 415, "unsupported-media-type"},
		{"text", "POST", "/invitations/hostile", "text/plain", `{"email":"a@b.co"}`, 415, "unsupported-media-type"},
		{"JSON-ish type", "POST", "/invitations/hostile", "application/jsonp", `{"email":"a@b.co"}`, 415, "unsupported-media-type"},
		{"too large", "POST", "/invitations/hostile", "application/json", `{"email":"` + strings.Repeat("x", 8000) + `"}`, 413, "body-too-large"},
	}
	for _, s := range sweep {
		req, err := http.NewRequest(s.method, base, strings.NewReader(s.body))
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = s.path // sent exactly as written, not cleaned by the client
		if s.contentType != "" {
			req.Header.Set("Content-Type", s.contentType)
		}
		if strings.HasPrefix(s.name, "cross-site") { // what a browser says of a post from another site
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			req.Header.Set("Origin", "https://evil.example")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s: %v", s.name, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != s.status || !strings.Contains(string(body), `"code":"`+s.problem+`"`) ||
			resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s %s; want %d %s", s.name, resp.StatusCode, resp.Header.Get("Content-Type"), body, s.status, s.problem)
		}
	}
	for _, code := range []string{"hostile", "HOSTILE", "$where"} {
		if n, err := e.store.Used(context.Background(), code); err != nil || n != 0 {
			t.Errorf("%s: %d redemptions stored after the sweep (%v), want 0", code, n, err)
		}
	}
}
