package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/testbed"
	"github.com/velvetrope/velvetrope/pkg/regtoken"
)

// TestRedemptionWritesAnEmailFile: without a mail server the dispatcher in
// the redeemer writes each player's instructions email as an .eml file.
func TestRedemptionWritesAnEmailFile(t *testing.T) {
	dir := t.TempDir()
	p, _ := startRedeemer(t, "--mail-dir", dir, "--mail-poll-interval", "50ms", "--game-name", "Starfall")
	if status := redeemOne(t, p.Addr, "Mail.Player+beta@Example.com", "ru-RU,ru;q=0.9"); status != 201 {
		t.Fatalf("redeem: %d", status)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
		if len(files) == 1 {
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			eml := string(b)
			for _, want := range []string{"To: <Mail.Player+beta@Example.com>", "Message-ID: <redemption.twitter-reg1.", "Content-Type: text/html"} {
				if !strings.Contains(eml, want) {
					t.Errorf("email lacks %q:\n%s", want, eml)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d email files after 15s, want 1", len(files))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMailWaitsWithoutAMailServer: with neither --smtp-host nor --mail-dir
// the redeemer runs no dispatcher. A redemption is answered as ever and its
// email stays pending in MongoDB, no attempt made and nothing written; a
// warning and velvetrope_mail_configured 0 say so. A redeemer started later
// with a mail server delivers it.
func TestMailWaitsWithoutAMailServer(t *testing.T) {
	work := t.TempDir()
	t.Chdir(work) // the redeemer runs here: a relative default directory would show up
	database, st := newDatabase(t)
	p := startRedeemerOn(t, database, "--mail-dir", "", "--mail-poll-interval", "50ms")
	if status := redeemOne(t, p.Addr, "Waiting.Player@Example.com", "en"); status != 201 {
		t.Fatalf("redeem: %d, want 201 as with a mail server", status)
	}
	time.Sleep(time.Second) // twenty mail polls, were a dispatcher running

	ctx := t.Context()
	if c, err := st.MailCounts(ctx, "twitter-reg1"); err != nil || c.Pending != 1 || c.Sent != 0 || c.Failed != 0 {
		t.Fatalf("mail without a mail server: %+v %v; want 1 pending, none sent or failed", c, err)
	}
	due, err := st.DueMail(ctx, time.Now(), 10)
	if err != nil || len(due) != 1 || due[0].Attempts != 0 || due[0].Email.Raw != "Waiting.Player@Example.com" {
		t.Fatalf("the outbox: %+v %v; want the one email, as typed, with no attempt", due, err)
	}
	if files, _ := os.ReadDir(work); len(files) > 0 {
		t.Errorf("the redeemer wrote %d files in its working directory (%s…)", len(files), files[0].Name())
	}
	if !strings.Contains(warnings(p.Logs()), "No mail server configured") {
		t.Errorf("no warning says that emails are not sent:\n%s", p.Logs())
	}
	if _, _, m := get(t, "http://"+p.MetricsAddr+"/metrics"); !strings.Contains(m, "\nvelvetrope_mail_configured 0\n") || strings.Contains(m, "velvetrope_mail_sent_total") {
		t.Errorf("metrics must say velvetrope_mail_configured 0, with no dispatcher's counters:\n%s", grepLines(m, "velvetrope_mail_"))
	}

	smtp, err := testbed.StartSMTP()
	if err != nil {
		t.Fatal(err)
	}
	defer smtp.Stop()
	// Another redeemer on the same database, the first still running (a
	// rolling update that brings the mail server's settings).
	q := startRedeemerOn(t, database, "--mail-dir", "", "--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(smtp.Port()), "--smtp-tls", "none", "--mail-poll-interval", "50ms",
		"--mail-token-key", tokenKey)
	deadline := time.Now().Add(15 * time.Second)
	for len(smtp.Messages()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	msgs := smtp.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "Waiting.Player@Example.com" {
		t.Fatalf("the mail server got %d messages (%+v), want the waiting email", len(msgs), msgs)
	}
	for {
		c, err := st.MailCounts(ctx, "twitter-reg1")
		if err == nil && c.Sent == 1 && c.Pending == 0 && c.Failed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mail counts after delivery: %+v %v; want 1 sent", c, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, m := get(t, "http://"+q.MetricsAddr+"/metrics"); !strings.Contains(m, "\nvelvetrope_mail_configured 1\n") || !strings.Contains(m, "\nvelvetrope_mail_sent_total 1\n") {
		t.Errorf("the redeemer with a mail server: want velvetrope_mail_configured 1 and one sent:\n%s", grepLines(m, "velvetrope_mail_"))
	}
	if files, _ := os.ReadDir(work); len(files) > 0 {
		t.Errorf("%d files written in the working directory", len(files))
	}
}

// tokenKey is the tests' MAIL_TOKEN_KEY: a redeemer with a mail server
// sends nothing without one.
const tokenKey = "redeemer-test-token-key-0123456789abcdef"

// TestMailWaitsForATokenKey: a redeemer with a mail server but no token key
// sends nothing, rather than sign links with a key only it knows (the game
// could not verify them, and each pod's would differ): the email stays
// pending with no attempt and nothing reaches the mail server, not even
// with --mail-dir set; a warning and both gauges say so. A redeemer started
// beside it with the key delivers the email, and its link verifies with
// that key for the player's canonical email.
func TestMailWaitsForATokenKey(t *testing.T) {
	smtp, err := testbed.StartSMTP()
	if err != nil {
		t.Fatal(err)
	}
	defer smtp.Stop()
	database, st := newDatabase(t)
	withSMTP := []string{"--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(smtp.Port()), "--smtp-tls", "none",
		"--mail-poll-interval", "50ms", "--mail-link-base", "https://game.example/register"}
	p := startRedeemerOn(t, database, withSMTP...)
	if status := redeemOne(t, p.Addr, "Keyless.Player+beta@Example.com", "en"); status != 201 {
		t.Fatalf("redeem: %d, want 201 as with a key", status)
	}
	time.Sleep(time.Second) // twenty mail polls, were a dispatcher running

	ctx := t.Context()
	due, err := st.DueMail(ctx, time.Now(), 10)
	if err != nil || len(due) != 1 || due[0].Attempts != 0 {
		t.Fatalf("the outbox: %+v %v; want the one email, with no attempt", due, err)
	}
	if n := len(smtp.Messages()); n != 0 {
		t.Fatalf("the mail server got %d messages from a redeemer without a token key", n)
	}
	if !strings.Contains(warnings(p.Logs()), "No registration token key (--mail-token-key, MAIL_TOKEN_KEY)") {
		t.Errorf("no warning says that emails wait for a token key:\n%s", p.Logs())
	}
	_, _, m := get(t, "http://"+p.MetricsAddr+"/metrics")
	for _, want := range []string{"\nvelvetrope_mail_configured 0\n", "\nvelvetrope_mail_token_key_configured 0\n"} {
		if !strings.Contains(m, want) || strings.Contains(m, "velvetrope_mail_sent_total") {
			t.Errorf("metrics must say %q, with no dispatcher's counters:\n%s", strings.TrimSpace(want), grepLines(m, "velvetrope_mail_"))
		}
	}

	q := startRedeemerOn(t, database, append(withSMTP, "--mail-token-key", tokenKey)...)
	msgs := waitMessages(t, smtp, 1)
	body, err := msgs[0].Text()
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`https://game\.example/register\?token=(\S+)`).FindStringSubmatch(body)
	if link == nil {
		t.Fatalf("no registration link in:\n%s", body)
	}
	key, _ := regtoken.NewKey([]byte(tokenKey))
	v, _ := regtoken.NewVerifier(key)
	if c, err := v.VerifyFor(link[1], "keyless.player@example.com", time.Now()); err != nil || c.Code != "twitter-reg1" || c.KeyID != key.ID {
		t.Errorf("the mailed token: %v, %v", c, err)
	}
	if !strings.Contains(q.Logs(), `"keyID":"`+key.ID+`"`) || strings.Contains(q.Logs(), tokenKey) {
		t.Errorf("the redeemer must log the key's id, never the key:\n%s", grepLines(q.Logs(), "key"))
	}
	_, _, m = get(t, "http://"+q.MetricsAddr+"/metrics")
	for _, want := range []string{"\nvelvetrope_mail_configured 1\n", "\nvelvetrope_mail_token_key_configured 1\n", "\nvelvetrope_mail_sent_total 1\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("the redeemer with a key: want %q:\n%s", strings.TrimSpace(want), grepLines(m, "velvetrope_mail_"))
		}
	}
}

// waitMessages waits up to 15s for the mail server to hold n messages.
func waitMessages(t *testing.T, smtp *testbed.SMTP, n int) []testbed.Message {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(smtp.Messages()) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	msgs := smtp.Messages()
	if len(msgs) != n {
		t.Fatalf("the mail server got %d messages, want %d", len(msgs), n)
	}
	return msgs
}

// redeemOne redeems twitter-reg1 for email on the redeemer at addr and
// returns the status.
func redeemOne(t *testing.T, addr, email, lang string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/invitations/twitter-reg1", strings.NewReader(`{"email":"`+email+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept-Language", lang)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// warnings returns the log lines at level warn.
func warnings(logs string) string {
	var b strings.Builder
	for _, line := range strings.Split(logs, "\n") {
		var l struct{ Level string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Level == "warn" {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func grepLines(s, substr string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}
