package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/redeemer"
)

// fallbackServer answers every code as unknown, exactly as a fleet answers
// one (the redeemer's own HTTP layer: the documented 404 problem+json, or
// the landing page's "no such invitation"). The chart routes the bare
// /invitations prefix here, once for the whole cluster, so a code no
// Invitation has never meets the front door's default page. Every manager
// replica serves it, leader or not.
type fallbackServer struct {
	addr string
	log  logr.Logger
}

func (s fallbackServer) NeedLeaderElection() bool { return false }

func (s fallbackServer) Start(ctx context.Context) error {
	h, err := redeemer.NewServer(redeemer.Config{}, noCodes{}, prometheus.NewRegistry(), s.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	s.log.Info("Answering unknown codes", "address", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// noCodes is a redeemer that has no invitation at all.
type noCodes struct{}

func (noCodes) Redeem(context.Context, string, invite.Email, string) (invite.Outcome, error) {
	return 0, invite.ErrUnknownCode
}
func (noCodes) Status(string) (invite.PublicStatus, error) {
	return invite.PublicStatus{}, invite.ErrUnknownCode
}
func (noCodes) Ready() error { return nil }
