package e2e

import (
	"context"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/loadgen"
	"github.com/velvetrope/velvetrope/internal/testbed"
	"github.com/velvetrope/velvetrope/pkg/regtoken"
)

// TestStormMail: a crowd through two redeemers with a real SMTP server; every
// person answered 201 gets exactly one email, at the address they typed,
// with a registration token that verifies for them and the code.
func TestStormMail(t *testing.T) {
	const key = "e2e-token-key-0123456789abcdef0123"
	e := newEnv(t, active("mailstorm", 300))
	smtp, err := testbed.StartSMTP()
	if err != nil {
		t.Fatal(err)
	}
	defer smtp.Stop()
	flags := []string{"--smtp-host", "127.0.0.1", "--smtp-port", itoa(smtp.Port()), "--smtp-tls", "none",
		"--mail-token-key", key, "--mail-poll-interval", "100ms", "--mail-link-base", "https://game.example/register"}
	a, b := e.redeemer(flags...), e.redeemer(flags...)
	res := loadgen.Run(context.Background(), loadgen.Config{
		Targets: []string{"http://" + a.Addr, "http://" + b.Addr}, Codes: []string{"mailstorm"}, Requests: 1200, Concurrency: 64, Email: mix.Email,
	})
	audit(t, e, []string{"mailstorm"}, res)
	if len(res.Answered) != 300 {
		t.Fatalf("%d answered 201, want the code exhausted at 300", len(res.Answered))
	}

	deadline := time.Now().Add(60 * time.Second)
	for len(smtp.Messages()) < 300 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // would a duplicate follow?
	signingKey, _ := regtoken.NewKey([]byte(key))
	verifier, _ := regtoken.NewVerifier(signingKey)
	want := map[string]bool{}
	for _, raw := range res.Answered {
		want[strings.TrimSpace(raw)] = true
	}
	got := map[string]int{}
	for _, m := range smtp.Messages() {
		to := m.To[0]
		got[to]++
		body, err := m.Text()
		if err != nil {
			t.Fatal(err)
		}
		link := regexp.MustCompile(`https://game\.example/register\?token=(\S+)`).FindStringSubmatch(body)
		if link == nil {
			t.Errorf("%s: no registration link", to)
			continue
		}
		token, _ := url.QueryUnescape(link[1])
		canonical, _ := invite.ParseEmail(to, invite.DefaultFolding)
		claims, err := verifier.VerifyFor(token, canonical.Canonical, time.Now())
		if err != nil || claims.Code != "mailstorm" || claims.RedemptionID == "" {
			t.Errorf("%s: token %+v, %v", to, claims, err)
		}
	}
	for to := range want {
		if got[to] != 1 {
			t.Errorf("%s answered 201 and got %d emails", to, got[to])
		}
	}
	for to := range got {
		if !want[to] {
			t.Errorf("%s got an email but was not answered 201", to)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
