package testbed

import (
	"io"
	"net/http"
	"strconv"
	"strings"
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
