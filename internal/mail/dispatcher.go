// Package mail delivers the instructions email of every redemption: an
// outbox dispatcher over MongoDB, SMTP and file senders, and templates. The
// registration link's token is minted with pkg/regtoken, the one
// implementation the game's backend verifies with. It never imports the
// MongoDB driver (storage comes in through Store) or net/http.
package mail

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	gomail "github.com/wneessen/go-mail"
	"golang.org/x/time/rate"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/pkg/regtoken"
)

// Store is the outbox.
type Store interface {
	DueMail(ctx context.Context, now time.Time, limit int) ([]invite.Outbound, error)
	ClaimAttempt(ctx context.Context, nonce string, n int, by string, leaseUntil time.Time) (bool, time.Time, error)
	RecordAttempt(ctx context.Context, r invite.Redemption, a invite.Attempt) error
	// RedemptionTimes lists when each redemption of code was made, oldest
	// first: the player's number is 1 + those before theirs.
	RedemptionTimes(ctx context.Context, code string) ([]time.Time, error)
	OldestPendingMail(ctx context.Context) (time.Time, error)
	MailTemplates(ctx context.Context, code string) (map[string]string, error)
}

// Config tunes a dispatcher; zero fields take the defaults in brackets.
type Config struct {
	ID           string // this dispatcher's name in claims (pod name)
	From         string // sender address
	GameName     string
	LinkBase     string        // registration page; the token is added as ?token=
	TokenTTL     time.Duration // [720h]
	PollInterval time.Duration // [1s]
	Batch        int           // emails per round [50]
	// Lease is how long an attempt belongs to its dispatcher [2m]; a send
	// gets SendTimeout, which must be shorter, so a live dispatcher never
	// records an outcome after its lease ran out [30s].
	Lease, SendTimeout time.Duration
	MaxAttempts        int // then the email is failed [8]
	// Rate caps emails sent per second by this dispatcher (0: no cap), so
	// mail shares the pod's CPU with a flash crowd instead of taking it.
	Rate float64
	// Busy reports whether this process is answering a crowd (requests
	// waiting for the database). While it is, rounds wait, at most
	// BusyDeferMax in a row [10s]: a crowd's claims get the database first,
	// and its emails follow a moment later. nil: never busy.
	Busy         func() bool
	BusyDeferMax time.Duration
	// IdlePollMax: while rounds find nothing due, polls slow down,
	// doubling up to this [10s] (on the test bed a poll reads the whole
	// collection). Wake brings an idle dispatcher back at once: this
	// process wrote redemptions (nil: never).
	IdlePollMax             time.Duration
	Wake                    <-chan struct{}
	BaseBackoff, MaxBackoff time.Duration // exponential, with full jitter [30s, 1h]
	Now                     func() time.Time
}

func (c *Config) defaults() {
	d := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	d(&c.TokenTTL, 30*24*time.Hour)
	d(&c.PollInterval, time.Second)
	d(&c.Lease, 2*time.Minute)
	d(&c.SendTimeout, 30*time.Second)
	d(&c.BaseBackoff, 30*time.Second)
	d(&c.MaxBackoff, time.Hour)
	d(&c.BusyDeferMax, 10*time.Second)
	d(&c.IdlePollMax, 10*time.Second)
	if c.SendTimeout >= c.Lease {
		c.SendTimeout = c.Lease / 2
	}
	if c.Batch <= 0 {
		c.Batch = 50
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Dispatcher sends the emails of due redemptions. Any number may run at once
// (one per redeemer pod): each attempt is claimed by a unique insert, so in
// the normal case every email is sent once; a dispatcher that dies mid-send
// leaves its claim to expire, and the email is sent again (at least once,
// never lost; the Message-ID is stable so receivers can de-duplicate).
type Dispatcher struct {
	store     Store
	sender    Sender
	templates *Templates
	signer    *regtoken.Signer
	cfg       Config
	log       logr.Logger
	metrics   *metrics
	limiter   *rate.Limiter // nil: no cap

	mu       sync.Mutex
	compiled map[string]*Templates

	// Only Round (one at a time: Run's loop) uses what follows.
	round uint64
	// oldest is when the oldest pending email was redeemed, as last read
	// (at oldestRead) by OldestPendingMail.
	oldest, oldestRead time.Time
	// times caches each code's redemption times, for positions.
	times map[string]codeTimes
	// templatesRound caches each code's templates for one round.
	templatesRound map[string]*Templates
}

// codeTimes is one read of a code's redemption times.
type codeTimes struct {
	times  []time.Time // oldest first
	readAt time.Time
	round  uint64
}

const (
	// oldestEvery is how often the oldest pending email is read: on the
	// test bed that read scans the whole collection, and the gauge it feeds
	// is for alerts measured in minutes. Between reads the age keeps growing
	// from the last answer, and a due email older still lowers it at once.
	oldestEvery = 15 * time.Second
	// A read of a code's redemption times answers, in the round that made
	// it, every email redeemed before it (as a count at send time did); in
	// later rounds, for up to timesMaxAge, the emails redeemed at least
	// timesSettle before it, by when every redemption made earlier has been
	// stored (a redemption's insert ends within --write-timeout, 5 s) or
	// given up. timesMaxAge bounds how long a revocation goes unseen in the
	// numbers.
	timesSettle = 10 * time.Second
	timesMaxAge = time.Minute
)

// NewDispatcher returns a dispatcher; reg receives its metrics.
func NewDispatcher(store Store, sender Sender, templates *Templates, signer *regtoken.Signer, cfg Config, reg prometheus.Registerer, log logr.Logger) (*Dispatcher, error) {
	cfg.defaults()
	if cfg.From == "" || cfg.ID == "" || signer == nil {
		return nil, fmt.Errorf("mail dispatcher needs From, ID and a token signer")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{store: store, sender: sender, templates: templates, signer: signer, cfg: cfg, log: log, metrics: m,
		compiled: map[string]*Templates{}, times: map[string]codeTimes{}}
	if cfg.Rate > 0 {
		d.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate)))
	}
	return d, nil
}

// Run delivers until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	var deferredSince time.Time
	idle := d.cfg.PollInterval // the next wait after a round that found nothing
	for ctx.Err() == nil {
		if d.cfg.Busy != nil && d.cfg.Busy() {
			if deferredSince.IsZero() {
				deferredSince = d.cfg.Now()
			}
			if d.cfg.Now().Sub(deferredSince) < d.cfg.BusyDeferMax {
				select {
				case <-ctx.Done():
				case <-time.After(d.cfg.PollInterval):
				}
				continue
			}
		}
		deferredSince = time.Time{}
		n, err := d.Round(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Error(err, "Mail round failed")
		}
		if n == d.cfg.Batch {
			continue // more is due: no pause
		}
		wait := d.cfg.PollInterval
		if n == 0 && err == nil {
			wait, idle = idle, min(2*idle, d.cfg.IdlePollMax)
		} else {
			idle = d.cfg.PollInterval
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		case <-d.cfg.Wake:
			idle = d.cfg.PollInterval
		}
	}
}

// Round handles the emails due now and reports how many it looked at. Its
// reads are bounded per round, not per email: the due emails, and for each
// code among them that this dispatcher wins an attempt of, the code's
// redemption times (at most once, see timesSettle) and templates; per email,
// only the claim and the outcome's writes. One round at a time.
func (d *Dispatcher) Round(ctx context.Context) (int, error) {
	d.round++
	clear(d.templatesRound)
	now := d.cfg.Now()
	for code, c := range d.times {
		if now.Sub(c.readAt) >= timesMaxAge || now.Before(c.readAt) {
			delete(d.times, code)
		}
	}
	due, err := d.store.DueMail(ctx, now, d.cfg.Batch)
	d.observeOldest(ctx, now, due)
	if err != nil {
		return 0, err
	}
	for _, o := range due {
		if d.limiter != nil && d.limiter.Wait(ctx) != nil {
			break
		}
		if ctx.Err() != nil {
			break
		}
		if err := d.deliver(ctx, o); err != nil {
			d.log.Error(err, "Mail delivery failed", "code", o.Code, "slot", o.Slot)
		}
	}
	return len(due), nil
}

// observeOldest sets the oldest-pending-age gauge, reading the oldest
// pending email at most every oldestEvery.
func (d *Dispatcher) observeOldest(ctx context.Context, now time.Time, due []invite.Outbound) {
	if d.oldestRead.IsZero() || now.Sub(d.oldestRead) >= oldestEvery || now.Before(d.oldestRead) {
		if oldest, err := d.store.OldestPendingMail(ctx); err == nil {
			d.oldest, d.oldestRead = oldest, now
		}
	}
	oldest := d.oldest
	for _, o := range due {
		if oldest.IsZero() || o.RedeemedAt.Before(oldest) {
			oldest = o.RedeemedAt
		}
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, now.Sub(oldest).Seconds())
	}
	d.metrics.oldest.Set(age)
}

// position is o's number on its code, from the code's redemption times
// (codeTimes), read again when the last read cannot answer for o.
func (d *Dispatcher) position(ctx context.Context, o invite.Outbound) (int, error) {
	t := o.RedeemedAt.Truncate(time.Millisecond) // as stored
	c, ok := d.times[o.Code]
	if !ok || c.round != d.round && c.readAt.Sub(t) < timesSettle {
		readAt := d.cfg.Now()
		times, err := d.store.RedemptionTimes(ctx, o.Code)
		if err != nil {
			return 0, err
		}
		c = codeTimes{times: times, readAt: readAt, round: d.round}
		d.times[o.Code] = c
	}
	before, _ := slices.BinarySearchFunc(c.times, t, func(e, t time.Time) int {
		if e.Before(t) {
			return -1
		}
		return 1
	})
	return before + 1, nil
}

// templatesOf is templatesFor, read once per code per round.
func (d *Dispatcher) templatesOf(ctx context.Context, code string) (*Templates, error) {
	if t, ok := d.templatesRound[code]; ok {
		return t, nil
	}
	t, err := d.templatesFor(ctx, code)
	if err != nil {
		return nil, err
	}
	if d.templatesRound == nil {
		d.templatesRound = map[string]*Templates{}
	}
	d.templatesRound[code] = t
	return t, nil
}

// deliver claims the next attempt of o, sends and records the outcome.
func (d *Dispatcher) deliver(ctx context.Context, o invite.Outbound) error {
	now := d.cfg.Now()
	lease := now.Add(d.cfg.Lease)
	n := o.Attempts + 1
	for ; ; n++ {
		won, held, err := d.store.ClaimAttempt(ctx, o.Nonce, n, d.cfg.ID, lease)
		if err != nil {
			return err
		}
		if won {
			break
		}
		if held.After(now) || n > o.Attempts+d.cfg.MaxAttempts {
			return nil // another dispatcher is on it
		}
		// Attempt n was claimed by a dispatcher whose lease ran out without
		// recording anything (it died): take the next attempt.
	}

	msg, err := d.compose(ctx, o)
	if err != nil {
		return err
	}
	sendCtx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
	sendErr := d.sender.Send(sendCtx, msg)
	cancel()
	if ctx.Err() != nil || d.cfg.Now().After(lease) {
		return nil // stopped or too late to speak for this attempt: the next claimant will
	}
	a := invite.Attempt{Number: n, At: d.cfg.Now()}
	switch {
	case sendErr == nil:
		a.State = invite.MailSent
		d.metrics.sent.Inc()
	case Permanent(sendErr) || n >= d.cfg.MaxAttempts:
		a.State, a.Error = invite.MailFailed, redact(sendErr, o.Email)
		d.metrics.failed.Inc()
	default:
		a.State, a.Error = invite.MailPending, redact(sendErr, o.Email)
		a.NextAt = a.At.Add(d.backoff(n))
		d.metrics.retried.Inc()
	}
	return d.store.RecordAttempt(ctx, o.Redemption, a)
}

// backoff is exponential with full jitter: a random wait in [0, base·2^(n-1)],
// capped, so dispatchers retrying a recovering server do not stampede.
func (d *Dispatcher) backoff(n int) time.Duration {
	ceiling := d.cfg.BaseBackoff << min(n-1, 20)
	if ceiling <= 0 || ceiling > d.cfg.MaxBackoff {
		ceiling = d.cfg.MaxBackoff
	}
	return time.Duration(rand.Int64N(int64(ceiling))) + time.Millisecond
}

// compose renders o's email: to the address as typed, with a stable
// Message-ID and a registration link carrying a signed token. The token
// names the redemption by its nonce and binds the canonical email without
// carrying it (docs/registration.md).
func (d *Dispatcher) compose(ctx context.Context, o invite.Outbound) (*gomail.Msg, error) {
	pos, err := d.position(ctx, o)
	if err != nil {
		return nil, err
	}
	templates, err := d.templatesOf(ctx, o.Code)
	if err != nil {
		return nil, err
	}
	expires := d.cfg.Now().Add(d.cfg.TokenTTL)
	token, err := d.signer.Sign(regtoken.Grant{Code: o.Code, RedemptionID: o.Nonce, Email: o.Email.Canonical, Expires: expires})
	if err != nil {
		return nil, err
	}
	sep := "?"
	if strings.Contains(d.cfg.LinkBase, "?") {
		sep = "&"
	}
	r, err := templates.Render(o.Lang, Data{
		GameName: d.cfg.GameName, Code: o.Code, Position: pos,
		Link: d.cfg.LinkBase + sep + "token=" + url.QueryEscape(token), Expires: expires.UTC().Format("2006-01-02 15:04 MST"),
	})
	if err != nil {
		return nil, err
	}
	m := gomail.NewMsg()
	if err := m.From(d.cfg.From); err != nil {
		return nil, err
	}
	to := o.Email.Raw
	if to == "" {
		to = o.Email.Canonical
	}
	if err := m.To(to); err != nil {
		return nil, err
	}
	m.Subject(r.Subject)
	m.SetMessageIDWithValue(MessageID(o.Redemption, d.cfg.From))
	m.SetBodyString(gomail.TypeTextPlain, r.Text)
	m.AddAlternativeString(gomail.TypeTextHTML, r.HTML)
	return m, nil
}

// templatesFor returns the code's templates: the defaults with the
// invitation's overrides (spec.mail.templatesConfigMap, validated by the
// operator). Compiled templates are cached by their source.
func (d *Dispatcher) templatesFor(ctx context.Context, code string) (*Templates, error) {
	parts, err := d.store.MailTemplates(ctx, code)
	if err != nil || len(parts) == 0 {
		return d.templates, err
	}
	key, _ := json.Marshal(parts) // map keys are sorted: a stable cache key
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.compiled[string(key)]; ok {
		return t, nil
	}
	t, err := d.templates.Override(parts)
	if err != nil {
		return nil, err
	}
	if len(d.compiled) > 1000 {
		clear(d.compiled)
	}
	d.compiled[string(key)] = t
	return t, nil
}

// MessageID is the same for every attempt of one redemption's email.
func MessageID(r invite.Redemption, from string) string {
	domain := "velvetrope.invalid"
	if at := strings.LastIndexByte(from, '@'); at >= 0 {
		domain = strings.Trim(from[at+1:], "> ")
	}
	return fmt.Sprintf("redemption.%s.%d.%s@%s", r.Code, r.Slot, r.Nonce, domain)
}

// redact keeps the address out of stored and logged errors.
func redact(err error, e invite.Email) string {
	s := err.Error()
	for _, a := range []string{e.Raw, e.Canonical} {
		if a != "" {
			s = strings.ReplaceAll(s, a, "<recipient>")
		}
	}
	return s
}

// RegisterConfigured registers velvetrope_mail_configured: 1 when this
// process sends the outbox's emails (it runs a dispatcher), 0 when they wait
// in MongoDB for a process that does; and velvetrope_mail_token_key_configured:
// 1 when a registration token key was given, 0 when not (then a mail server
// sends nothing, and --mail-dir signs with a key of its own). Unlike the
// dispatcher's own metrics they exist in every process, so a missing mail
// server or key shows as a 0.
func RegisterConfigured(reg prometheus.Registerer, sending, tokenKey bool) error {
	configured := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "velvetrope_mail_configured",
		Help: "1 when this process sends emails (a mail server and a token key, or --mail-dir); 0 when they wait in MongoDB unsent (no mail server, no token key, or --mail-dispatch=false).",
	})
	keyed := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "velvetrope_mail_token_key_configured",
		Help: "1 when a registration token key (MAIL_TOKEN_KEY) was given; 0 when not: a mail server then sends nothing, rather than sign links with a key only this process knows.",
	})
	if sending {
		configured.Set(1)
	}
	if tokenKey {
		keyed.Set(1)
	}
	if err := reg.Register(configured); err != nil {
		return err
	}
	return reg.Register(keyed)
}

type metrics struct {
	sent, failed, retried prometheus.Counter
	oldest                prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "velvetrope_mail_sent_total", Help: "Emails the mail server accepted."}),
		failed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "velvetrope_mail_failed_total", Help: "Emails given up (permanent error or too many attempts)."}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{Name: "velvetrope_mail_retried_total", Help: "Attempts that failed temporarily and will be retried."}),
		oldest:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "velvetrope_mail_oldest_pending_age_seconds", Help: "Age of the oldest email not sent yet."}),
	}
	for _, c := range []prometheus.Collector{m.sent, m.failed, m.retried, m.oldest} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
