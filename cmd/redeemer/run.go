package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/velvetrope/velvetrope/internal/claim"
	"github.com/velvetrope/velvetrope/internal/mail"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/peers"
	"github.com/velvetrope/velvetrope/internal/redeemer"
	"github.com/velvetrope/velvetrope/pkg/regtoken"
)

// run wires the redeemer and serves until SIGTERM or SIGINT, then drains:
// /readyz fails for --drain-delay while requests are still served, then the
// server shuts down and waits for requests and MongoDB writes in flight.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	zl := newZap(stdout, cfg.logLevel)
	defer zl.Sync()
	log := zapr.NewLogger(zl)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	client, err := mongostore.Connect(cfg.mongoURI, "velvetrope-redeemer")
	if err != nil {
		return fmt.Errorf("mongodb: %w", err)
	}
	defer client.Disconnect(context.Background())
	store := mongostore.New(client.Database(cfg.mongoDatabase))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	instrumented, err := claim.Instrument(store, reg)
	if err != nil {
		return err
	}
	// New redemptions wake this process's mail dispatcher, whose polls
	// slow down while nothing is due.
	wake := make(chan struct{}, 1)
	cfg.claim.OnRedeemed = func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	cfg.mail.dispatcher.Wake = wake
	var (
		peerLn    net.Listener
		peerToken string // the fleet's replicas share the MongoDB URI, hence this
		members   *peers.Members
	)
	if cfg.peerListen != "" {
		if peerLn, err = net.Listen("tcp", cfg.peerListen); err != nil {
			return fmt.Errorf("peer port: %w", err)
		}
		defer peerLn.Close()
		peerToken = redeemer.PeerToken([]byte(cfg.mongoURI))
		addr, err := advertised(cfg.peerAdvertise, peerLn.Addr(), getenv("POD_IP"))
		if err != nil {
			return err
		}
		members, err = peers.New(store, redeemer.NewPeerClient(peerToken), peers.Config{Campaign: cfg.claim.Campaign, Addr: addr, Heartbeat: cfg.peerHeartbeat}, reg, log.WithName("peers"))
		if err != nil {
			return err
		}
		cfg.claim.Writers = members
	}
	svc := claim.New(instrumented, cfg.claim, log.WithName("claim"))
	srv, err := redeemer.NewServer(cfg.http, svc, reg, log.WithName("http"))
	if err != nil {
		return err
	}
	defer srv.Close()

	// A crowd's claims, and then its answers from memory, before its mail.
	cfg.mail.dispatcher.Busy = func() bool { return svc.Busy() || srv.Busy() }
	dispatcher, warning, err := newDispatcher(cfg.mail, store, reg, log.WithName("mail"))
	if err != nil {
		return err
	}
	if err := mail.RegisterConfigured(reg, dispatcher != nil, cfg.mail.tokenKey != ""); err != nil {
		return err
	}
	if warning != "" {
		// A warning, which logr cannot write: nothing is lost, but no player
		// hears from us until someone completes the mail settings.
		zl.Named("mail").Warn(warning)
	}

	// Both listeners are bound before anything is logged as listening, so
	// tests and tools can pass port 0 and read both addresses from that line.
	var metricsLn net.Listener
	if cfg.metricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.metricsAddr); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		defer metricsLn.Close()
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	httpSrv := newHTTPServer(srv, cfg.timeouts, zl)
	listening := []any{"addr", ln.Addr().String(), "database", cfg.mongoDatabase, "version", version}
	metricsErr := make(chan error, 1)
	if metricsLn != nil {
		// Served until the process ends, draining included: a scrape during
		// the drain still sees the last requests.
		metricsSrv := newHTTPServer(redeemer.MetricsHandler(reg), cfg.timeouts, zl)
		go func() { metricsErr <- metricsSrv.Serve(metricsLn) }()
		defer metricsSrv.Close()
		listening = append(listening, "metricsAddr", metricsLn.Addr().String())
	}
	peerErr := make(chan error, 1)
	if peerLn != nil {
		// Served until the players' server has shut down: claims handed
		// over during the drain are still answered.
		peerSrv := newHTTPServer(redeemer.NewPeerHandler(cfg.http, svc, peerToken, log.WithName("peer")), cfg.timeouts, zl)
		redeemer.ConfigurePeerServer(peerSrv)
		go func() { peerErr <- peerSrv.Serve(peerLn) }()
		defer peerSrv.Close()
		listening = append(listening, "peerAddr", peerLn.Addr().String(), "peerAdvertise", members.Addr(), "replica", members.ID())
	}
	log.Info("Listening", listening...)

	// The view loads in the background: the process serves /healthz at once
	// and /readyz turns true when MongoDB answered and indexes exist.
	pollCtx, stopPolling := context.WithCancel(context.Background())
	var polling sync.WaitGroup
	polling.Go(func() {
		if !ensureIndexes(pollCtx, store, log) {
			return
		}
		if dispatcher != nil {
			// Stopping mid-send records nothing: the claim's lease runs out
			// and another dispatcher sends that email again.
			polling.Go(func() { dispatcher.Run(pollCtx) })
		}
		if members != nil {
			polling.Go(func() { members.Run(pollCtx, svc.Ready) })
		}
		svc.Run(pollCtx)
	})
	defer func() { stopPolling(); polling.Wait() }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case err := <-metricsErr:
		return fmt.Errorf("metrics: %w", err)
	case err := <-peerErr:
		return fmt.Errorf("peer port: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal ends the process at once

	log.Info("Shutting down: draining", "drainDelay", cfg.drainDelay)
	srv.Drain()
	if members != nil {
		// Peers stop handing claims here within a heartbeat.
		wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		members.Withdraw(wctx)
		cancel()
	}
	select {
	case <-time.After(cfg.drainDelay):
	case err := <-serveErr:
		return err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
	defer cancel()
	err = httpSrv.Shutdown(shutdownCtx)
	if err != nil {
		httpSrv.Close() // past the deadline: cut the stragglers
	}
	svc.Stop() // no new batches; wait for inserts in flight before disconnecting
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("Stopped")
	return nil
}

// ensureIndexes retries until the indexes exist: no redemption may be taken
// before the unique email index guards it. It backs off up to 10s and never
// exits the process, so a MongoDB outage is not a crash loop.
func ensureIndexes(ctx context.Context, store *mongostore.Store, log logr.Logger) bool {
	backoff := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := store.EnsureIndexes(cctx)
		cancel()
		if err == nil {
			return true
		}
		log.Error(err, "Could not ensure MongoDB indexes; retrying", "backoff", backoff)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// newHTTPServer serves h with the timeouts that bound what a slow or
// malicious client can hold.
func newHTTPServer(h http.Handler, t serverTimeouts, zl *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          zap.NewStdLog(zl.Named("net/http")),
	}
}

// newZap logs JSON lines to w, as Kubernetes log collectors expect.
func newZap(w io.Writer, level zapcore.Level) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey, enc.EncodeTime = "ts", zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), level)
	return zap.New(core)
}

// Why a redeemer sends no mail, for its warning.
const (
	warnNoMailServer = "No mail server configured (--smtp-host, SMTP_HOST): this redeemer sends no emails. " +
		"Each redemption's email waits, pending, in MongoDB; a redeemer started with a mail server sends it. " +
		"(--mail-dir writes them as .eml files instead, for development.)"
	warnNoTokenKey = "No registration token key (--mail-token-key, MAIL_TOKEN_KEY): this redeemer sends no emails, " +
		"rather than sign their links with a key only it knows, which the game could not verify. " +
		"Each redemption's email waits, pending, in MongoDB; a redeemer started with the key sends it (docs/registration.md)."
)

// newDispatcher wires the mail dispatcher: SMTP with --smtp-host, else .eml
// files in --mail-dir. It returns nil when this process sends no mail, with
// a warning saying why unless that was asked for (--mail-dispatch=false):
// with neither a mail server nor a directory, a dispatcher would have
// nowhere to send; with a mail server but no token key, it would sign links
// with a key of its own that the game cannot verify, and that differs from
// pod to pod. Emails then wait in MongoDB's outbox, pending, for a process
// that can send them. Only a directory, for development, gets a random key.
func newDispatcher(c mailConfig, store *mongostore.Store, reg prometheus.Registerer, log logr.Logger) (*mail.Dispatcher, string, error) {
	var sender mail.Sender
	switch {
	case !c.dispatch:
		return nil, "", nil
	case c.smtp.Host != "":
		if c.smtp.Timeout == 0 {
			c.smtp.Timeout = 20 * time.Second
		}
		s, err := mail.NewSMTP(c.smtp)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %v", errUsage, err)
		}
		if c.tokenKey == "" {
			return nil, warnNoTokenKey, nil
		}
		sender = s
	case c.dir != "":
		log.Info("No --smtp-host: emails are written as files and counted sent", "dir", c.dir)
		sender = mail.Dir{Path: c.dir}
	default:
		return nil, warnNoMailServer, nil
	}
	secret := []byte(c.tokenKey)
	if len(secret) == 0 {
		secret = make([]byte, regtoken.MinKeySize)
		rand.Read(secret)
		log.Info("No --mail-token-key: the links in these files are signed with a random key that nothing else can verify")
	}
	key, err := regtoken.NewKey(secret)
	if err != nil {
		return nil, "", fmt.Errorf("%w: --mail-token-key: %v", errUsage, err)
	}
	signer, err := regtoken.NewSigner(key)
	if err != nil {
		return nil, "", fmt.Errorf("%w: --mail-token-key: %v", errUsage, err)
	}
	if c.tokenKey != "" {
		// The id, not the key: which key a fleet signs with, during a rotation.
		log.Info("Signing registration links", "keyID", signer.KeyID())
	}
	host, _ := os.Hostname()
	c.dispatcher.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	d, err := mail.NewDispatcher(store, sender, mail.DefaultTemplates(), signer, c.dispatcher, reg, log)
	return d, "", err
}

// advertised is the address peers reach the peer port at: flag, else the
// listener's own address when it names a host (loopback in tests and
// benchmarks), else the pod's IP (the downward API's POD_IP) with the port.
func advertised(flag string, ln net.Addr, podIP string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	host, port, err := net.SplitHostPort(ln.String())
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return ln.String(), nil
	}
	if podIP == "" {
		return "", fmt.Errorf("%w: --peer-listen on every interface needs --peer-advertise or POD_IP, the address peers dial", errUsage)
	}
	return net.JoinHostPort(podIP, port), nil
}
