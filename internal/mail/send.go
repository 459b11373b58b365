package mail

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Sender delivers one message.
type Sender interface {
	Send(ctx context.Context, m *gomail.Msg) error
}

// SMTPConfig is how to reach the mail server.
type SMTPConfig struct {
	Host     string
	Port     int
	Username string // empty: no authentication
	Password string
	// TLS is "mandatory" (STARTTLS or fail), "opportunistic" or "none".
	TLS     string
	Timeout time.Duration
}

// SMTP sends through a mail server with go-mail (TLS/STARTTLS, auth, timeouts).
type SMTP struct {
	opts []gomail.Option
	host string
}

// NewSMTP checks cfg and returns a sender; it connects per batch of messages.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	opts := []gomail.Option{gomail.WithPort(cfg.Port), gomail.WithTimeout(cfg.Timeout)}
	switch cfg.TLS {
	case "mandatory", "":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case "opportunistic":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		return nil, fmt.Errorf("smtp tls %q: use mandatory, opportunistic or none", cfg.TLS)
	}
	if cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain), gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	if _, err := gomail.NewClient(cfg.Host, opts...); err != nil {
		return nil, err
	}
	return &SMTP{opts: opts, host: cfg.Host}, nil
}

// Send delivers m.
func (s *SMTP) Send(ctx context.Context, m *gomail.Msg) error {
	c, err := gomail.NewClient(s.host, s.opts...)
	if err != nil {
		return err
	}
	return c.DialAndSendWithContext(ctx, m)
}

// Permanent reports whether err is a 5xx answer from the mail server: the
// message will never be accepted, so retrying is pointless. Everything else
// (4xx, connection refused, timeouts) is worth another try.
func Permanent(err error) bool {
	var se *gomail.SendError
	if errors.As(err, &se) {
		code := se.ErrorCode()
		return code >= 500 && code < 600
	}
	return false
}

// Dir writes each message as an .eml file, so a local run shows what players
// would receive. Only an explicit choice (the redeemer's --mail-dir): a
// message written here counts as sent, yet nobody receives it, so without
// a mail server or a directory the redeemer sends nothing and emails wait.
type Dir struct{ Path string }

// Send writes m to <Path>/<message id>.eml.
func (d Dir) Send(_ context.Context, m *gomail.Msg) error {
	if err := os.MkdirAll(d.Path, 0o755); err != nil {
		return err
	}
	id := strings.Trim(strings.Join(m.GetGenHeader(gomail.HeaderMessageID), ""), "<>")
	name := strings.NewReplacer("/", "_", "@", "_at_", "#", "_").Replace(id)
	return m.WriteToFile(filepath.Join(d.Path, name+".eml"))
}
