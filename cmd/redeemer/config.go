package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/velvetrope/velvetrope/internal/claim"
	"github.com/velvetrope/velvetrope/internal/flagenv"
	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mail"
	"github.com/velvetrope/velvetrope/internal/redeemer"
	"github.com/velvetrope/velvetrope/pkg/regtoken"
)

var errUsage = errors.New("usage")

type config struct {
	listen          string
	metricsAddr     string
	peerListen      string
	peerAdvertise   string
	peerHeartbeat   time.Duration
	mongoURI        string
	mongoDatabase   string
	drainDelay      time.Duration
	shutdownTimeout time.Duration
	timeouts        serverTimeouts
	mail            mailConfig
	logLevel        zapcore.Level
	http            redeemer.Config
	claim           claim.Config
}

// parseConfig reads flags; every flag falls back to the environment variable
// named after it (--mongodb-uri: MONGODB_URI). A bad value is an error at once.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	folding := invite.DefaultFolding
	c.http.Folding = &folding
	fs := flag.NewFlagSet("redeemer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", ":8080", "address to serve HTTP on (env LISTEN_ADDR)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", ":9090", "address to serve GET /metrics on, apart from the players' port; empty or 0: no metrics (METRICS_ADDR=0: an empty variable counts as unset)")
	fs.StringVar(&c.peerListen, "peer-listen", "", "address of the peer port, where the fleet's other replicas hand over the claims this replica writes "+
		"(one writer per code: docs/architecture.md); empty: this replica writes every claim it gets and hands none over")
	fs.StringVar(&c.peerAdvertise, "peer-advertise", "", "host:port the other replicas reach the peer port at; empty: the --peer-listen address when it names a host, else POD_IP with its port")
	fs.DurationVar(&c.peerHeartbeat, "peer-heartbeat", 2*time.Second, "how often this replica announces itself in MongoDB and reads the fleet's other replicas; one silent for 5 heartbeats is left out")
	fs.StringVar(&c.mongoURI, "mongodb-uri", "", "MongoDB connection string (required)")
	fs.StringVar(&c.mongoDatabase, "mongodb-database", "velvetrope", "MongoDB database")
	fs.DurationVar(&c.drainDelay, "drain-delay", 5*time.Second, "after SIGTERM, keep serving this long with /readyz failing, so load balancers stop routing here")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 15*time.Second, "after the drain delay, how long in-flight requests may take to finish")
	fs.Var(&c.logLevel, "log-level", "debug, info, warn or error")
	fs.DurationVar(&c.timeouts.readHeader, "read-header-timeout", 5*time.Second, "time a client has to send the request headers (slowloris bound)")
	fs.DurationVar(&c.timeouts.read, "read-timeout", 10*time.Second, "time a client has to send the whole request")
	fs.DurationVar(&c.timeouts.write, "write-timeout-http", 15*time.Second, "time to write a response")
	fs.DurationVar(&c.timeouts.idle, "idle-timeout", 90*time.Second, "how long an idle keep-alive connection is kept")
	fs.Uint64Var(&c.http.RateLimit, "rate-limit", 60, "redemption requests per --rate-interval per client: an IPv4 address or an IPv6 /64 (0: no limit)")
	fs.DurationVar(&c.http.RateInterval, "rate-interval", time.Minute, "rate limit window")
	fs.IntVar(&c.http.RateLimitKeys, "rate-limit-keys", 65536, "clients the rate limiter remembers; beyond, the least recently seen starts over with a full allowance")
	fs.Func("trusted-proxies", "comma-separated CIDRs whose X-Forwarded-For is believed", func(s string) error {
		c.http.TrustedProxies = nil
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			prefix, err := netip.ParsePrefix(p)
			if err != nil {
				return err
			}
			c.http.TrustedProxies = append(c.http.TrustedProxies, prefix)
		}
		return nil
	})
	fs.Int64Var(&c.http.MaxBodyBytes, "max-body-bytes", 4096, "largest request body accepted (larger: 413)")
	fs.BoolVar(&c.http.Folding.PlusTags, "fold-plus-tags", true, "treat name+tag@domain as name@domain")
	fs.BoolVar(&c.http.Folding.GmailDots, "fold-gmail-dots", true, "ignore dots in Gmail addresses")
	fs.StringVar(&c.claim.Campaign, "campaign", "", "serve only this campaign's invitations (the operator sets it for each campaign's fleet); empty: all")
	fs.IntVar(&c.claim.MaxPending, "max-pending", 1024, "redemptions that may wait for MongoDB at once; more wait --admission-wait, then get 503")
	fs.DurationVar(&c.claim.AdmissionWait, "admission-wait", 250*time.Millisecond, "how long a request may wait for a pending place")
	fs.IntVar(&c.claim.BatchSize, "batch-size", 128, "slot claims per MongoDB insert")
	fs.IntVar(&c.claim.Parallel, "parallel-batches", 2, "inserts in flight per invitation")
	fs.DurationVar(&c.claim.PollInterval, "poll-interval", time.Second, "how often the invitations' version is read (the invitations when it changed)")
	fs.DurationVar(&c.claim.FullPoll, "full-poll-interval", time.Minute, "how often the invitations are re-read even when their version did not change (edits made behind the operator's back)")
	fs.DurationVar(&c.claim.UsageInterval, "usage-interval", 5*time.Second, "how often usage tallies are re-read (revocations are seen within this)")
	fs.DurationVar(&c.claim.WriteTimeout, "write-timeout", 5*time.Second, "deadline of one MongoDB operation (sent to the server as maxTimeMS, so a slow majority write concern fails explicitly)")
	fs.DurationVar(&c.claim.RedeemTimeout, "redeem-timeout", 10*time.Second, "deadline of one redemption, all attempts included; between --write-timeout and --write-timeout-http")
	fs.BoolVar(&c.mail.dispatch, "mail-dispatch", true, "run a mail dispatcher in this process (any number may run)")
	fs.StringVar(&c.mail.smtp.Host, "smtp-host", "", "mail server; empty: emails are written to --mail-dir, or without one are not sent but wait in MongoDB for a redeemer that has a mail server")
	fs.IntVar(&c.mail.smtp.Port, "smtp-port", 587, "mail server port")
	fs.StringVar(&c.mail.smtp.Username, "smtp-username", "", "SMTP user (PLAIN auth); empty: no authentication")
	fs.StringVar(&c.mail.smtp.Password, "smtp-password", "", "SMTP password (prefer the SMTP_PASSWORD variable)")
	fs.StringVar(&c.mail.smtp.TLS, "smtp-tls", "mandatory", "STARTTLS policy: mandatory, opportunistic or none")
	fs.StringVar(&c.mail.dir, "mail-dir", "", "without --smtp-host, write each email as an .eml file here and count it sent (for development: nobody receives it); empty: emails wait in MongoDB")
	fs.StringVar(&c.mail.tokenKey, "mail-token-key", "", "key (at least 32 bytes) signing registration tokens, which the game verifies with it (docs/registration.md; prefer MAIL_TOKEN_KEY); "+
		"required to send through --smtp-host: without it emails wait in MongoDB. With --mail-dir alone, a random key is used (development)")
	fs.StringVar(&c.mail.dispatcher.From, "mail-from", "VelvetRope <beta@localhost>", "sender of the instructions email")
	fs.StringVar(&c.mail.dispatcher.GameName, "game-name", "", "the game's name, on the landing page and in the email; empty: sentences without one (\"Join the closed beta\")")
	brandingFile := fs.String("branding-file", "", "JSON file with the landing page's look per campaign (docs/landing-page.md)")
	fs.StringVar(&c.mail.dispatcher.LinkBase, "mail-link-base", "http://localhost:8080/register", "registration page; the signed token is added as ?token=")
	fs.DurationVar(&c.mail.dispatcher.TokenTTL, "mail-token-ttl", 30*24*time.Hour, "how long a registration link works")
	fs.IntVar(&c.mail.dispatcher.MaxAttempts, "mail-max-attempts", 8, "attempts before an email is failed (a 5xx answer fails it at once)")
	fs.DurationVar(&c.mail.dispatcher.BaseBackoff, "mail-retry-backoff", 30*time.Second, "first retry wait (exponential, full jitter)")
	fs.DurationVar(&c.mail.dispatcher.PollInterval, "mail-poll-interval", time.Second, "how often due emails are looked for")
	fs.DurationVar(&c.mail.dispatcher.IdlePollMax, "mail-idle-poll-interval", 10*time.Second, "while nothing is due, polls slow down to this (this process's new redemptions wake its dispatcher at once)")
	fs.Float64Var(&c.mail.dispatcher.Rate, "mail-rate", 20, "emails per second this process sends at most (0: no cap), so mail does not take a crowd's CPU")

	// --listen is LISTEN_ADDR, the Kubernetes convention.
	if err := flagenv.Parse(fs, args, getenv, map[string]string{"listen": "LISTEN_ADDR"}); err != nil {
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if c.metricsAddr == "0" {
		c.metricsAddr = ""
	}
	if *brandingFile != "" {
		b, err := os.ReadFile(*brandingFile)
		if err == nil {
			err = json.Unmarshal(b, &c.http.Brands)
		}
		if err != nil {
			return c, fmt.Errorf("%w: --branding-file: %v", errUsage, err)
		}
	}
	if c.http.Brands.Default.Title == "" {
		c.http.Brands.Default.Title = c.mail.dispatcher.GameName
	}
	if c.http.Brands.Default.Accent == "" {
		c.http.Brands.Default.Accent = redeemer.DefaultBranding.Accent
	}
	if c.http.Brands.Default.Background == "" {
		c.http.Brands.Default.Background = redeemer.DefaultBranding.Background
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	case c.mongoURI == "":
		return c, fmt.Errorf("%w: --mongodb-uri (or MONGODB_URI) is required", errUsage)
	case c.claim.BatchSize < 1 || c.claim.BatchSize > 1000:
		return c, fmt.Errorf("%w: --batch-size must be 1..1000", errUsage)
	case c.claim.MaxPending < 1 || c.claim.Parallel < 1:
		return c, fmt.Errorf("%w: --max-pending and --parallel-batches must be at least 1", errUsage)
	case c.http.RateLimitKeys < 1:
		return c, fmt.Errorf("%w: --rate-limit-keys must be at least 1", errUsage)
	case c.mail.tokenKey != "" && len(c.mail.tokenKey) < regtoken.MinKeySize:
		return c, fmt.Errorf("%w: --mail-token-key (MAIL_TOKEN_KEY) must be at least %d bytes", errUsage, regtoken.MinKeySize)
	case c.http.MaxBodyBytes < 64:
		return c, fmt.Errorf("%w: --max-body-bytes must be at least 64", errUsage)
	case c.timeouts.readHeader <= 0 || c.timeouts.read <= 0 || c.timeouts.write <= 0 || c.timeouts.idle <= 0,
		c.drainDelay < 0 || c.shutdownTimeout <= 0 || c.claim.PollInterval <= 0 || c.claim.FullPoll <= 0 || c.claim.UsageInterval <= 0 ||
			c.claim.WriteTimeout <= 0 || c.claim.AdmissionWait < 0 || c.http.RateInterval <= 0 || c.peerHeartbeat <= 0:
		return c, fmt.Errorf("%w: durations must be positive", errUsage)
	case c.claim.RedeemTimeout < c.claim.WriteTimeout || c.claim.RedeemTimeout >= c.timeouts.write:
		// Past the HTTP write timeout the answer could not be written: the
		// client would see a dropped connection, not a 503 it may retry.
		return c, fmt.Errorf("%w: --redeem-timeout must be at least --write-timeout and below --write-timeout-http", errUsage)
	}
	return c, nil
}

// mailConfig is the dispatcher's wiring.
type mailConfig struct {
	dispatch   bool
	smtp       mail.SMTPConfig
	dir        string
	tokenKey   string
	dispatcher mail.Config
}

// serverTimeouts bound what a slow or malicious client can hold.
type serverTimeouts struct {
	readHeader, read, write, idle time.Duration
}
