package mail_test

import (
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/pkg/regtoken"
)

// TestRegistrationDocPython runs the Python example of docs/registration.md,
// as the page shows it, against a token the dispatcher mailed: the game's
// backend, written from the page alone, verifies what VelvetRope sends.
func TestRegistrationDocPython(t *testing.T) {
	script := pythonExample(t)
	st := redeemed(t, "pydoc", 1) // Player0+beta@Example.com, nonce n0
	srv := startSMTP(t)
	dispatch(t, st, srv, "a", nil)
	waitCounts(t, st, "pydoc", invite.MailCounts{Sent: 1})
	msgs := srv.Messages()
	body, err := msgs[0].Text()
	if err != nil {
		t.Fatal(err)
	}
	link := linkRE.FindStringSubmatch(body)
	if link == nil {
		t.Fatalf("no registration link in:\n%s", body)
	}
	mailed, _ := url.QueryUnescape(link[1])
	typed := msgs[0].To[0]

	rotated := []byte("the-key-after-rotation-0123456789abc")
	expired := mint(t, key, "pydoc", "n0", "player0@example.com", time.Now().Add(-time.Second))
	tampered := []byte(mailed)
	if i := len("vr2.") + 9 + 3; tampered[i] == 'A' { // a character of the body
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	for _, tt := range []struct {
		name             string
		token, email     string
		keys             [][]byte // MAIL_TOKEN_KEY, MAIL_TOKEN_KEY_PREVIOUS
		v1               bool
		want, wantStderr string
	}{
		{"the mailed token, for the address as typed", mailed, typed, [][]byte{key}, false, `"redemption_id": "n0"`, ""},
		{"rotation: the old key still held", mailed, typed, [][]byte{rotated, key}, false, `"code": "pydoc"`, ""},
		{"rotation: the old key dropped", mailed, typed, [][]byte{rotated}, false, "", "unknown key id " + regtoken.KeyID(key)},
		{"another email", mailed, "Player1@Example.com", [][]byte{key}, false, "", "issued for another email"},
		{"tampered", string(tampered), typed, [][]byte{key}, false, "", "signature does not match"},
		{"expired", expired, typed, [][]byte{key}, false, "", "expired"},
		{"version 1 when accepted", v1Token, "Player@Example.com", [][]byte{rotated, v1Key}, true, `"version": 1`, ""},
		{"version 1 by default", v1Token, "player@example.com", [][]byte{v1Key}, false, "", "unknown key"},
	} {
		stdout, stderr, err := runPython(t, script, tt.keys, tt.v1, tt.token, tt.email)
		if tt.wantStderr == "" {
			var claims map[string]any
			if err != nil || json.Unmarshal([]byte(stdout), &claims) != nil || !strings.Contains(stdout, tt.want) {
				t.Errorf("%s: %v\nstdout: %s\nstderr: %s", tt.name, err, stdout, stderr)
			}
			continue
		}
		if err == nil || !strings.Contains(stderr, tt.wantStderr) {
			t.Errorf("%s: %v, want exit 1 saying %q\nstdout: %s\nstderr: %s", tt.name, err, tt.wantStderr, stdout, stderr)
		}
	}

	// What the mailed token claims, field by field.
	stdout, stderr, err := runPython(t, script, [][]byte{key}, false, mailed, typed)
	var claims struct {
		Version      int    `json:"version"`
		KeyID        string `json:"key_id"`
		Code         string `json:"code"`
		RedemptionID string `json:"redemption_id"`
		Expires      int64  `json:"expires"`
	}
	if err != nil || json.Unmarshal([]byte(stdout), &claims) != nil {
		t.Fatalf("%v: %s %s", err, stdout, stderr)
	}
	ttl := time.Until(time.Unix(claims.Expires, 0))
	if claims.Version != 2 || claims.KeyID != regtoken.KeyID(key) || claims.Code != "pydoc" || claims.RedemptionID != "n0" ||
		ttl < 29*24*time.Hour || ttl > 30*24*time.Hour {
		t.Errorf("claims %+v (expires in %s; want 30 days)", claims, ttl)
	}
}

// TestRegistrationDocCanonicalEmail: the page's canonical_email agrees with
// the redeemers' canonical form (internal/invite, default folding) on the
// ASCII spellings players type.
func TestRegistrationDocCanonicalEmail(t *testing.T) {
	script := pythonExample(t)
	for _, raw := range []string{
		"player@example.com", " Player+beta@Example.COM ", "First.Last+x@GoogleMail.com", "f.i.r.s.t@gmail.com.",
		"o'brien+a+b@Sub.Example.org", "a.b@example.co.uk",
	} {
		e, err := invite.ParseEmail(raw, invite.DefaultFolding)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		tok := mint(t, key, "c", "r", e.Canonical, time.Now().Add(time.Hour))
		if stdout, stderr, err := runPython(t, script, [][]byte{key}, false, tok, raw); err != nil {
			t.Errorf("%q (canonical %s): %v\n%s%s", raw, e.Canonical, err, stdout, stderr)
		}
	}
}

// Version 1 (before key ids), minted by the code pkg/regtoken replaced.
var (
	v1Key   = []byte("legacy-v1-key-0123456789abcdef0123")
	v1Token = "eyJjb2RlIjoidHdpdHRlci1yZWcxIiwiZW1haWwiOiJwbGF5ZXJAZXhhbXBsZS5jb20iLCJleHAiOjQxMDI0NDQ4MDB9.M4N_0MicfiZysslZmuQptynvRBjqVmwNO1kKP-sZHFY"
)

func mint(t *testing.T, secret []byte, code, rid, email string, expires time.Time) string {
	t.Helper()
	k, err := regtoken.NewKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := regtoken.NewSigner(k)
	tok, err := s.Sign(regtoken.Grant{Code: code, RedemptionID: rid, Email: email, Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pythonExample writes the ```python block of docs/registration.md to a
// file and returns its path. python3 must be installed: the test fails,
// never skips, without it.
func pythonExample(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is needed to run the Python example of docs/registration.md: install Python 3.9 or later " +
			"(Debian/Ubuntu: apt-get install python3; macOS: brew install python3) and put python3 on the PATH")
	}
	doc, err := os.ReadFile("../../docs/registration.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\n```python\n")
	code, _, ok2 := strings.Cut(rest, "\n```\n")
	if !ok || !ok2 {
		t.Fatal("docs/registration.md has no ```python block")
	}
	path := filepath.Join(t.TempDir(), "regtoken.py")
	if err := os.WriteFile(path, []byte(code+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runPython(t *testing.T, script string, keys [][]byte, v1 bool, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command("python3", append([]string{script}, args...)...)
	for _, kv := range os.Environ() { // the test's environment, but for the keys it sets
		if !strings.HasPrefix(kv, "MAIL_TOKEN_KEY") && !strings.HasPrefix(kv, "ACCEPT_V1_TOKENS=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for i, name := range []string{"MAIL_TOKEN_KEY", "MAIL_TOKEN_KEY_PREVIOUS"} {
		if i < len(keys) {
			cmd.Env = append(cmd.Env, name+"="+string(keys[i]))
		}
	}
	if v1 {
		cmd.Env = append(cmd.Env, "ACCEPT_V1_TOKENS=1")
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}
