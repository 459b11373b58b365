package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsHaveTheirOwnListener: GET /metrics answers on --metrics-addr
// only; on the players' port it is an unknown path like any other, while the
// probes stay there.
func TestMetricsHaveTheirOwnListener(t *testing.T) {
	p, _ := startRedeemer(t)
	if p.MetricsAddr == "" || p.MetricsAddr == p.Addr {
		t.Fatalf("metrics address %q (players' %q): want a listener of its own", p.MetricsAddr, p.Addr)
	}
	status, header, body := get(t, "http://"+p.Addr+"/metrics")
	var problem struct{ Code string }
	if status != 404 || header.Get("Content-Type") != "application/problem+json" || json.Unmarshal([]byte(body), &problem) != nil || problem.Code != "not-found" {
		t.Errorf("GET /metrics on the players' port: %d %s %s; want 404 not-found problem+json", status, header.Get("Content-Type"), body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if status, _, _ := get(t, "http://"+p.Addr+path); status != 200 {
			t.Errorf("GET %s on the players' port: %d, want 200", path, status)
		}
	}
	status, _, body = get(t, "http://"+p.MetricsAddr+"/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics on the metrics listener: %d", status)
	}
	for _, want := range []string{`velvetrope_http_requests_total{code="404",route="other"} 1`, "velvetrope_store_operation_duration_seconds", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if status, _, _ := get(t, "http://"+p.MetricsAddr+"/invitations/twitter-reg1"); status != 404 {
		t.Errorf("the metrics listener serves players' routes: %d", status)
	}
}

func TestMetricsListenerCanBeTurnedOff(t *testing.T) {
	p, _ := startRedeemer(t, "--metrics-addr", "")
	if p.MetricsAddr != "" {
		t.Errorf("--metrics-addr= still serves metrics on %s", p.MetricsAddr)
	}
	if status, _, _ := get(t, "http://"+p.Addr+"/metrics"); status != 404 {
		t.Errorf("GET /metrics on the players' port: %d, want 404", status)
	}
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}
