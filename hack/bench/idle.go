package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// runIdle is `make bench-idle`: many codes, nobody redeeming. It reports
// what one idle redeemer costs the test bed and itself: CPU of each, the
// redeemer's RSS, and storage operations per second.
func runIdle(codes int, window time.Duration, out string) error {
	ctx := context.Background()
	b, err := startBed(ctx)
	if err != nil {
		return err
	}
	defer b.stop()
	tmp, bin, mongo, dbName, store := b.tmp, b.bin, b.mongo, b.dbName, b.store
	db := mongo.Client.Database(dbName)
	// Seeded in bulk as documents of the data contract
	// (docs/architecture.md): PutInvitation one by one would take minutes
	// on the test bed, and the operator writes codes as they are applied.
	fmt.Fprintf(os.Stderr, "Seeding %d invitations…\n", codes)
	for start := 0; start < codes; start += 1000 {
		var docs []any
		for i := start; i < min(start+1000, codes); i++ {
			code := fmt.Sprintf("influencer-%d", i)
			docs = append(docs, bson.D{{Key: "_id", Value: code}, {Key: "maxUses", Value: 100}, {Key: "state", Value: "active"},
				{Key: "campaign", Value: "idle"}, {Key: "owner", Value: "bench/" + code}, {Key: "slotSpace", Value: 100}, {Key: "updatedAt", Value: time.Now()}})
		}
		if _, err := db.Collection(mongostore.InvitationsCollection).InsertMany(ctx, docs); err != nil {
			return err
		}
	}
	if err := store.PutInvitation(ctx, invite.Invitation{Code: "last", MaxUses: 1, State: invite.StateActive, Campaign: "idle", Owner: "bench/last"}); err != nil {
		return err
	}
	p, err := testbed.StartProcess(bin, []string{"--listen", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0", "--mongodb-uri", mongo.URI, "--mongodb-database", dbName,
		"--drain-delay", "0s", "--mail-dir", filepath.Join(tmp, "mail")})
	if err != nil {
		return err
	}
	defer p.Kill()
	target := "http://" + p.Addr
	if err := waitReady(target); err != nil {
		return fmt.Errorf("%w\n%s", err, p.Logs())
	}
	fmt.Fprintf(os.Stderr, "Idle for %v…\n", window)
	time.Sleep(5 * time.Second) // past start-up
	ferret, redeemer := mongo.PID(), p.Cmd.Process.Pid
	cpu0f, cpu0r, ops0 := cpuTicks(ferret), cpuTicks(redeemer), storeOps(p.MetricsAddr)
	time.Sleep(window)
	cpu1f, cpu1r, ops1 := cpuTicks(ferret), cpuTicks(redeemer), storeOps(p.MetricsAddr)
	secs := window.Seconds()
	var report strings.Builder
	fmt.Fprintf(&report, "Command: `make bench-idle` (%d codes, one idle redeemer, %v).\n\n", codes+1, window)
	fmt.Fprintf(&report, "| test bed CPU | redeemer CPU | redeemer RSS | storage operations |\n|---|---|---|---|\n")
	var opsText []string
	for op, n := range ops1 {
		if d := n - ops0[op]; d > 0 {
			opsText = append(opsText, fmt.Sprintf("%s %.1f/s", op, d/secs))
		}
	}
	fmt.Fprintf(&report, "| %.1f %% of a core | %.1f %% | %.0f MB | %s |\n",
		100*float64(cpu1f-cpu0f)/100/secs, 100*float64(cpu1r-cpu0r)/100/secs, rssMB(redeemer), strings.Join(opsText, ", "))
	fmt.Print(report.String())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
		os.WriteFile(out, []byte(report.String()), 0o644)
	}
	return nil
}

// cpuTicks is a process's user and system time in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
}

func rssMB(pid int) float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// storeOps counts the storage operations a redeemer made, by operation.
func storeOps(metricsAddr string) map[string]float64 {
	out := map[string]float64{}
	for name, v := range testbed.Scrape(metricsAddr, "velvetrope_store_operation_duration_seconds_count") {
		out[strings.TrimSuffix(strings.TrimPrefix(name, `velvetrope_store_operation_duration_seconds_count{op="`), `"}`)] = v
	}
	// Each heartbeat is two operations: an announcement and a read of the
	// campaign's replicas.
	out["peer_heartbeat"] = 2 * testbed.Scrape(metricsAddr, "velvetrope_peer_heartbeat_duration_seconds_count")["velvetrope_peer_heartbeat_duration_seconds_count"]
	return out
}
