package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadToolAuditsAStorm runs velvetrope-load as a user would, against two
// replicas, with --audit, --json and --plot; then breaks an invariant behind
// its back (maxUses lowered below usage) and expects the audit to fail.
func TestLoadToolAuditsAStorm(t *testing.T) {
	e := newEnv(t, active("twitter-reg1", 300), active("telegram-test", 200))
	a, b := e.redeemer(), e.redeemer()
	dir := t.TempDir()
	jsonPath, plotPath := filepath.Join(dir, "run.json"), filepath.Join(dir, "run.svg")
	load := func(extra ...string) (string, error) {
		args := append([]string{"--url", "http://" + a.Addr + ",http://" + b.Addr, "--code", "twitter-reg1,telegram-test",
			"--audit", "--mongodb-uri", e.mongo.URI, "--mongodb-database", e.db, "--quiet"}, extra...)
		out, err := exec.Command(loadBin, args...).CombinedOutput()
		return string(out), err
	}

	out, err := load("--requests", "3000", "--concurrency", "64", "--json", jsonPath, "--plot", plotPath, "--seed", "42")
	if err != nil {
		t.Fatalf("load tool: %v\n%s", err, out)
	}
	if !strings.Contains(out, "audit: clean") || !strings.Contains(out, "twitter-reg1: last 201 at") {
		t.Errorf("output lacks the audit or exhaustion times:\n%s", out)
	}
	var report struct {
		Requests    int                `json:"requests"`
		Statuses    map[string]int     `json:"statuses"`
		LastCreated map[string]float64 `json:"lastCreatedMs"`
		Timeline    []json.RawMessage  `json:"timeline"`
		Audited     bool               `json:"audited"`
		Violations  []string           `json:"violations"`
	}
	raw, err := os.ReadFile(jsonPath)
	if err != nil || json.Unmarshal(raw, &report) != nil {
		t.Fatalf("JSON report: %v\n%s", err, raw)
	}
	if report.Requests != 3000 || report.Statuses["201"] != 500 || !report.Audited || len(report.Violations) != 0 ||
		len(report.LastCreated) != 2 || len(report.Timeline) == 0 {
		t.Errorf("report: %s", raw)
	}
	if svg, err := os.ReadFile(plotPath); err != nil || !strings.Contains(string(svg), "<svg") {
		t.Errorf("plot: %v", err)
	}

	// Break an invariant: lower maxUses below what is stored.
	lowered := active("twitter-reg1", 10)
	if err := e.store.PutInvitation(context.Background(), lowered); err != nil {
		t.Fatal(err)
	}
	out, err = load("--requests", "5")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "audit: VIOLATION: twitter-reg1: 300 redemptions stored for 10 slots") {
		t.Fatalf("a broken invariant must fail the audit with exit 1: %v\n%s", err, out)
	}
}
