package redeemer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/velvetrope/velvetrope/internal/claim"
	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/redeemer"
)

func active(code string, maxUses int) invite.Invitation {
	return invite.Invitation{Code: code, MaxUses: maxUses, State: invite.StateActive, Campaign: "test"}
}

func newStore(t *testing.T, invs ...invite.Invitation) *mongostore.Store {
	return mongoServer.Store(t, invs...)
}

// replica is one redeemer (claim service + HTTP server) on a real listener.
type replica struct {
	*httptest.Server
	handler  *redeemer.Server
	svc      *claim.Service
	registry *prometheus.Registry // what the replica's metrics listener serves
}

// startReplica starts a replica over st; tune changes its claim service's
// configuration.
func startReplica(t *testing.T, st claim.Store, cfg redeemer.Config, tune ...func(*claim.Config)) *replica {
	t.Helper()
	ccfg := claim.Config{PollInterval: 50 * time.Millisecond, UsageInterval: 100 * time.Millisecond}
	for _, f := range tune {
		f(&ccfg)
	}
	svc := claim.New(st, ccfg, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	reg := prometheus.NewRegistry()
	h, err := redeemer.NewServer(cfg, svc, reg, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(func() { ts.Close(); cancel(); <-done; svc.Wait(); h.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for svc.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("replica not ready after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &replica{Server: ts, handler: h, svc: svc, registry: reg}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

func do(t *testing.T, client *http.Client, method, url, contentType, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header}
	json.Unmarshal(raw, &r.body)
	return r
}

func redeem(t *testing.T, client *http.Client, base, code, email string) response {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email})
	return do(t, client, http.MethodPost, base+"/invitations/"+code, "application/json", string(body))
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustPrefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}
