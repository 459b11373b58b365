package mail_test

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
	vmail "github.com/velvetrope/velvetrope/internal/mail"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
	"github.com/velvetrope/velvetrope/pkg/regtoken"
)

var key = []byte("0123456789abcdef0123456789abcdef")

// signer signs with key, as a redeemer given MAIL_TOKEN_KEY does.
func signer(t *testing.T) *regtoken.Signer {
	t.Helper()
	k, err := regtoken.NewKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := regtoken.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifier verifies what signer signs, as the game's backend does.
func verifier(t *testing.T) *regtoken.Verifier {
	t.Helper()
	k, _ := regtoken.NewKey(key)
	v, err := regtoken.NewVerifier(k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// redeemed stores n redemptions of code, as the redeemers would.
func redeemed(t *testing.T, code string, n int) *mongostore.Store {
	t.Helper()
	st := mongoServer.Store(t, invite.Invitation{Code: code, MaxUses: n, State: invite.StateActive})
	claims := make([]invite.Redemption, n)
	start := time.Now().Add(-time.Minute)
	for i := range claims {
		lang := "en"
		if i%2 == 1 {
			lang = "ru"
		}
		raw := fmt.Sprintf("Player%d+beta@Example.com", i)
		claims[i] = invite.Redemption{Code: code, Slot: i, Nonce: fmt.Sprint("n", i), Lang: lang,
			Email: invite.Email{Canonical: fmt.Sprintf("player%d@example.com", i), Raw: raw}, RedeemedAt: start.Add(time.Duration(i) * time.Millisecond)}
	}
	for _, r := range st.Claim(context.Background(), claims) {
		if r.Status != invite.ClaimInserted {
			t.Fatalf("setup: %+v", r)
		}
	}
	return st
}

func startSMTP(t *testing.T) *testbed.SMTP {
	t.Helper()
	s, err := testbed.StartSMTP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// dispatch runs a dispatcher until the returned stop is called (a kill: it
// records nothing for the attempt it is in).
func dispatch(t *testing.T, st *mongostore.Store, srv *testbed.SMTP, id string, tune func(*vmail.Config)) (stop func()) {
	t.Helper()
	sender, err := vmail.NewSMTP(vmail.SMTPConfig{Host: "127.0.0.1", Port: srv.Port(), TLS: "none", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := vmail.Config{ID: id, From: "beta@game.example", GameName: "Starfall", LinkBase: "https://game.example/register",
		PollInterval: 50 * time.Millisecond, BaseBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if tune != nil {
		tune(&cfg)
	}
	d, err := vmail.NewDispatcher(st, sender, vmail.DefaultTemplates(), signer(t), cfg, prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitCounts(t *testing.T, st *mongostore.Store, code string, want invite.MailCounts) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := st.MailCounts(context.Background(), code)
		got.OldestPending = time.Time{}
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mail counts %+v, want %+v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var linkRE = regexp.MustCompile(`https://game\.example/register\?token=([A-Za-z0-9_%.\-]+)`)

func TestEveryRedemptionGetsExactlyOneEmail(t *testing.T) {
	const n = 200
	st := redeemed(t, "twitter-reg1", n)
	srv := startSMTP(t)
	dispatch(t, st, srv, "a", nil)
	dispatch(t, st, srv, "b", nil)
	waitCounts(t, st, "twitter-reg1", invite.MailCounts{Sent: n})

	v := verifier(t)
	got := map[string]int{}
	for _, m := range srv.Messages() {
		header, err := m.Header()
		if err != nil {
			t.Fatal(err)
		}
		to := m.To[0]
		got[to]++
		body, err := m.Text()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, "twitter-reg1") {
			t.Errorf("%s: the code is not in the email", to)
		}
		link := linkRE.FindStringSubmatch(body)
		if link == nil {
			t.Fatalf("%s: no registration link in:\n%s", to, body)
		}
		token, _ := url.QueryUnescape(link[1])
		// Player7+beta@Example.com redeemed as player7@example.com, nonce n7.
		i := strings.TrimSuffix(strings.TrimPrefix(to, "Player"), "+beta@Example.com")
		claims, err := v.VerifyFor(token, "player"+i+"@example.com", time.Now())
		if err != nil || claims.Code != "twitter-reg1" || claims.RedemptionID != "n"+i {
			t.Errorf("%s: token %v, %v", to, claims, err)
		}
		if strings.Contains(strings.ToLower(link[0]), "example.com") {
			t.Errorf("%s: the link carries the address: %s", to, link[0])
		}
		if id := header.Get("Message-Id"); !strings.HasPrefix(id, "<redemption.twitter-reg1.") {
			t.Errorf("%s: Message-ID %q", to, id)
		}
		subject := header.Get("Subject")
		if i != "" && (i[len(i)-1]-'0')%2 == 1 && strings.Contains(subject, "invitation") {
			t.Errorf("%s chose Russian but got subject %q", to, subject)
		}
	}
	if len(got) != n {
		t.Fatalf("%d recipients got mail, want %d", len(got), n)
	}
	for to, k := range got {
		if k != 1 {
			t.Errorf("%s got %d emails", to, k)
		}
	}
}

func TestSMTPDownForAWhile(t *testing.T) {
	st := redeemed(t, "down", 20)
	srv := startSMTP(t)
	srv.Stop()
	dispatch(t, st, srv, "a", func(c *vmail.Config) { c.MaxAttempts = 1000 })
	time.Sleep(500 * time.Millisecond) // several refused attempts
	if c, _ := st.MailCounts(context.Background(), "down"); c.Sent != 0 || c.Pending != 20 {
		t.Fatalf("while the server is down: %+v", c)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitCounts(t, st, "down", invite.MailCounts{Sent: 20})
	if len(srv.Messages()) != 20 {
		t.Errorf("%d messages, want 20", len(srv.Messages()))
	}
}

func TestTemporaryRefusalIsRetriedPermanentIsFailed(t *testing.T) {
	st := redeemed(t, "refused", 2)
	srv := startSMTP(t)
	srv.Answer(451, 550) // the oldest email hears 451 (try later), the next 550 (never)
	dispatch(t, st, srv, "a", nil)
	waitCounts(t, st, "refused", invite.MailCounts{Sent: 1, Failed: 1})
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].To[0] != "Player0+beta@Example.com" {
		t.Fatalf("delivered %+v; want only the retried one", msgs)
	}
}

func TestDispatcherKilledMidBatch(t *testing.T) {
	const n = 30
	st := redeemed(t, "killed", n)
	srv := startSMTP(t)
	srv.Delay(100 * time.Millisecond) // sends take a while: A will be caught mid-send
	tune := func(c *vmail.Config) { c.Lease, c.SendTimeout = time.Second, 500*time.Millisecond }
	killA := dispatch(t, st, srv, "a", tune)
	dispatch(t, st, srv, "b", tune)
	time.Sleep(350 * time.Millisecond)
	killA()
	waitCounts(t, st, "killed", invite.MailCounts{Sent: n})
	got := map[string]int{}
	for _, m := range srv.Messages() {
		got[m.To[0]]++
	}
	dups := 0
	for _, k := range got {
		dups += k - 1
	}
	if len(got) != n {
		t.Fatalf("%d recipients got mail, want %d: nothing may be lost", len(got), n)
	}
	if dups > 1 { // A sends one at a time: at most the one in flight is sent twice
		t.Errorf("%d duplicates; only the email in flight when A died may be sent twice", dups)
	}
}

func TestInvitationTemplatesOverrideTheDefaults(t *testing.T) {
	st := redeemed(t, "custom", 1)
	inv := invite.Invitation{Code: "custom", MaxUses: 1, State: invite.StateActive,
		MailTemplates: map[string]string{"en.subject": "Your seat for {{.GameName}}: {{.Code}}"}}
	if err := st.PutInvitation(context.Background(), inv); err != nil {
		t.Fatal(err)
	}
	srv := startSMTP(t)
	dispatch(t, st, srv, "a", nil)
	waitCounts(t, st, "custom", invite.MailCounts{Sent: 1})
	header, err := srv.Messages()[0].Header()
	if err != nil {
		t.Fatal(err)
	}
	if got := header.Get("Subject"); got != "Your seat for Starfall: custom" {
		t.Errorf("subject %q", got)
	}
}

// countingStore counts the reads of redemption times.
type countingStore struct {
	vmail.Store
	mu    sync.Mutex
	times map[string]int
}

func (c *countingStore) RedemptionTimes(ctx context.Context, code string) ([]time.Time, error) {
	c.mu.Lock()
	c.times[code]++
	c.mu.Unlock()
	return c.Store.RedemptionTimes(ctx, code)
}

var positionRE = regexp.MustCompile(`player number (\d+) on this code`)

// Each email says its player's number on their own code, by time of
// redemption, whatever the other codes in its round; and the codes'
// redemption times are read once for rounds of emails redeemed before the
// read (one per code), not once per email.
func TestPositionsAcrossCodesAndRounds(t *testing.T) {
	st := mongoServer.Store(t, invite.Invitation{Code: "first", MaxUses: 40, State: invite.StateActive},
		invite.Invitation{Code: "second", MaxUses: 40, State: invite.StateActive})
	start := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	var claims []invite.Redemption
	want := map[string]string{} // address -> number
	seen := map[string]int{}
	for i := range 50 {
		code := "first"
		if i%3 == 0 {
			code = "second"
		}
		seen[code]++
		addr := fmt.Sprintf("p%d@example.com", i)
		want[addr] = fmt.Sprint(seen[code])
		// Slots run against time: the number is by time, not by slot.
		claims = append(claims, invite.Redemption{Code: code, Slot: 39 - seen[code], Nonce: fmt.Sprint("n", i), Lang: "en",
			Email: invite.Email{Canonical: addr, Raw: addr}, RedeemedAt: start.Add(time.Duration(i) * time.Millisecond)})
	}
	for _, r := range st.Claim(context.Background(), claims) {
		if r.Status != invite.ClaimInserted {
			t.Fatalf("setup: %+v", r)
		}
	}
	srv := startSMTP(t)
	cs := &countingStore{Store: st, times: map[string]int{}}
	sender, err := vmail.NewSMTP(vmail.SMTPConfig{Host: "127.0.0.1", Port: srv.Port(), TLS: "none", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d, err := vmail.NewDispatcher(cs, sender, vmail.DefaultTemplates(), signer(t),
		vmail.Config{ID: "a", From: "beta@game.example", LinkBase: "https://game.example/register", PollInterval: 50 * time.Millisecond, Batch: 7},
		prometheus.NewRegistry(), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitCounts(t, st, "first", invite.MailCounts{Sent: 33})
	waitCounts(t, st, "second", invite.MailCounts{Sent: 17})
	for _, m := range srv.Messages() {
		body, err := m.Text()
		if err != nil {
			t.Fatal(err)
		}
		got := positionRE.FindStringSubmatch(body)
		if got == nil || got[1] != want[m.To[0]] {
			t.Errorf("%s: number %v, want %s", m.To[0], got, want[m.To[0]])
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.times["first"] != 1 || cs.times["second"] != 1 {
		t.Errorf("redemption times read %v times over 8 rounds; want once per code", cs.times)
	}
}

// TestMailWaitsForACrowd: while the process answers a crowd, rounds wait, at
// most BusyDeferMax in a row; then mail goes out even if the crowd lasts.
func TestMailWaitsForACrowd(t *testing.T) {
	st := redeemed(t, "crowded", 5)
	srv := startSMTP(t)
	var busy atomic.Bool
	busy.Store(true)
	dispatch(t, st, srv, "a", func(c *vmail.Config) {
		c.Busy = busy.Load
		c.BusyDeferMax = time.Hour
	})
	time.Sleep(500 * time.Millisecond) // several polls
	if c, _ := st.MailCounts(context.Background(), "crowded"); c.Sent != 0 {
		t.Fatalf("sent during the crowd: %+v", c)
	}
	busy.Store(false)
	waitCounts(t, st, "crowded", invite.MailCounts{Sent: 5})

	lasting := redeemed(t, "lasting", 5)
	dispatch(t, lasting, srv, "b", func(c *vmail.Config) {
		c.Busy = func() bool { return true }
		c.BusyDeferMax = 300 * time.Millisecond
	})
	waitCounts(t, lasting, "lasting", invite.MailCounts{Sent: 5})
}

// TestIdleDispatcherSlowsDownAndWakes: with nothing due, polls slow down
// (IdlePollMax); this process's new redemptions wake the dispatcher at once,
// and anyone else's are still found within IdlePollMax.
func TestIdleDispatcherSlowsDownAndWakes(t *testing.T) {
	st := mongoServer.Store(t, invite.Invitation{Code: "woken", MaxUses: 5, State: invite.StateActive})
	srv := startSMTP(t)
	wake := make(chan struct{}, 1)
	dispatch(t, st, srv, "a", func(c *vmail.Config) { c.IdlePollMax = time.Hour; c.Wake = wake })
	// Waits of 50, 100, 200, 400, 800 ms, then 1.6 s from about 1.6 s on.
	time.Sleep(2400 * time.Millisecond)
	ann := invite.Redemption{Code: "woken", Slot: 0, Nonce: "n-ann", Lang: "en", RedeemedAt: time.Now(),
		Email: invite.Email{Canonical: "ann@example.com", Raw: "ann@example.com"}}
	if r := st.Claim(context.Background(), []invite.Redemption{ann}); r[0].Status != invite.ClaimInserted {
		t.Fatalf("setup: %+v", r[0])
	}
	time.Sleep(300 * time.Millisecond)
	if c, _ := st.MailCounts(context.Background(), "woken"); c.Sent != 0 {
		t.Fatalf("an idle dispatcher polled 2.7 s in: %+v; want its polls slowed down", c)
	}
	wake <- struct{}{}
	waitCounts(t, st, "woken", invite.MailCounts{Sent: 1})

	// Written by another process, while a dispatcher that is never woken
	// idles: found at one of its slowed polls.
	other := mongoServer.Store(t, invite.Invitation{Code: "elsewhere", MaxUses: 5, State: invite.StateActive})
	dispatch(t, other, srv, "b", func(c *vmail.Config) { c.IdlePollMax = 200 * time.Millisecond })
	time.Sleep(600 * time.Millisecond)
	bob := ann
	bob.Code, bob.Nonce, bob.Email = "elsewhere", "n-bob", invite.Email{Canonical: "bob@example.com", Raw: "bob@example.com"}
	if r := other.Claim(context.Background(), []invite.Redemption{bob}); r[0].Status != invite.ClaimInserted {
		t.Fatalf("setup: %+v", r[0])
	}
	waitCounts(t, other, "elsewhere", invite.MailCounts{Sent: 1})
}
