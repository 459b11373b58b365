package testbed

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// SMTP is a real SMTP server on loopback (emersion/go-smtp) that keeps what
// it receives, and can be told to refuse, stall, or go away and come back.
type SMTP struct {
	Addr string
	// Dir, when set, also receives each accepted message as an .eml file
	// (make dev's mail directory).
	Dir string

	mu       sync.Mutex
	messages []Message
	answers  []int // SMTP codes to answer the next DATA commands with
	delay    time.Duration
	server   *smtp.Server
	ln       net.Listener
}

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	Data []byte
}

// StartSMTP starts the server on a free loopback port.
func StartSMTP() (*SMTP, error) {
	s := &SMTP{Addr: "127.0.0.1:0"}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start (re)starts the server on its address.
func (s *SMTP) Start() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return err
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.mu.Lock()
	s.Addr, s.server, s.ln = ln.Addr().String(), srv, ln
	s.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// Stop closes the server; Start brings it back on the same port.
func (s *SMTP) Stop() {
	s.mu.Lock()
	srv, ln := s.server, s.ln
	s.server, s.ln = nil, nil
	s.mu.Unlock()
	if ln != nil {
		ln.Close() // ours to close: Serve may not have registered it yet
	}
	if srv != nil {
		srv.Close()
	}
}

// Port is the server's TCP port.
func (s *SMTP) Port() int { return s.tcpAddr().Port }

func (s *SMTP) tcpAddr() *net.TCPAddr {
	a, _ := net.ResolveTCPAddr("tcp", s.Addr)
	return a
}

// Answer makes the next DATA commands fail with these codes (4xx: try
// later, 5xx: never), one code per message.
func (s *SMTP) Answer(codes ...int) {
	s.mu.Lock()
	s.answers = append(s.answers, codes...)
	s.mu.Unlock()
}

// Delay makes every DATA command wait d before answering.
func (s *SMTP) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Messages returns what was accepted so far.
func (s *SMTP) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

type session struct {
	s    *SMTP
	from string
	to   []string
}

func (x *session) Reset()        { x.from, x.to = "", nil }
func (x *session) Logout() error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error { x.from = from; return nil }

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error { x.to = append(x.to, to); return nil }

func (x *session) Data(r io.Reader) error {
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		return err
	}
	x.s.mu.Lock()
	delay := x.s.delay
	var code int
	if len(x.s.answers) > 0 {
		code, x.s.answers = x.s.answers[0], x.s.answers[1:]
	}
	x.s.mu.Unlock()
	time.Sleep(delay)
	if code != 0 {
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: "refused by the test server"}
	}
	x.s.mu.Lock()
	x.s.messages = append(x.s.messages, Message{From: x.from, To: x.to, Data: b.Bytes()})
	n := len(x.s.messages)
	x.s.mu.Unlock()
	if x.s.Dir != "" {
		name := filepath.Join(x.s.Dir, fmt.Sprintf("%d-%06d.eml", time.Now().UnixNano(), n))
		if err := os.WriteFile(name, b.Bytes(), 0o644); err != nil {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: err.Error()}
		}
	}
	return nil
}

// Header parses the message and returns its header.
func (m Message) Header() (mail.Header, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return nil, err
	}
	return msg.Header, nil
}

// Text decodes the text/plain part of the message, as a mail client does
// (multipart/alternative; quoted-printable is decoded by mime/multipart).
func (m Message) Text() (string, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return "", err
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return "", err
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			return "", fmt.Errorf("no text/plain part: %w", err)
		}
		if strings.HasPrefix(part.Header.Get("Content-Type"), "text/plain") {
			var r io.Reader = part
			if part.Header.Get("Content-Transfer-Encoding") == "base64" {
				r = base64.NewDecoder(base64.StdEncoding, part)
			}
			b, err := io.ReadAll(r)
			return string(b), err
		}
	}
}
