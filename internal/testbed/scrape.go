package testbed

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Scrape reads GET /metrics on a process's metrics listener (the
// redeemer's --metrics-addr): every sample whose name starts with prefix, by
// its name with labels. Nothing when the listener does not answer.
func Scrape(metricsAddr, prefix string) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return out
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			out[f[0]] = v
		}
	}
	return out
}

// WaitForPeers waits until every process reports all of them as live peers
// (velvetrope_peer_replicas), so that a crowd starts on a fleet that agrees
// on each code's writer. Processes without a peer port report no such
// metric and are not waited for.
func WaitForPeers(ps []*Process, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		settled := true
		for _, p := range ps {
			seen := Scrape(p.MetricsAddr, "velvetrope_peer_replicas")
			if len(seen) == 0 {
				return nil
			}
			if seen["velvetrope_peer_replicas"] != float64(len(ps)) {
				settled = false
			}
		}
		if settled {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the %d replicas did not see each other within %v", len(ps), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
