package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/testbed"
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
	q := startRedeemerOn(t, database, "--mail-dir", "", "--smtp-host", "127.0.0.1", "--smtp-port", strconv.Itoa(smtp.Port()), "--smtp-tls", "none", "--mail-poll-interval", "50ms")
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
