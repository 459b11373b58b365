package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRedemptionWritesAnEmailFile: without a mail server the dispatcher in
// the redeemer writes each player's instructions email as an .eml file.
func TestRedemptionWritesAnEmailFile(t *testing.T) {
	dir := t.TempDir()
	p, _ := startRedeemer(t, "--mail-dir", dir, "--mail-poll-interval", "50ms", "--game-name", "Starfall")
	req, _ := http.NewRequest("POST", "http://"+p.Addr+"/invitations/twitter-reg1", strings.NewReader(`{"email":"Mail.Player+beta@Example.com"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept-Language", "ru-RU,ru;q=0.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("redeem: %d", resp.StatusCode)
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
