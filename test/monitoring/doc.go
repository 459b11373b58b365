// Package monitoring tests the chart's launch dashboard and alerting rules
// (charts/velvetrope/templates/monitoring.yaml) against the real processes:
// every PromQL expression parses with the Prometheus parser, every metric,
// label and label value it names is one that a running redeemer or manager
// exports after traffic, and the dashboard decodes strictly as a Grafana
// dashboard.
//
// Prometheus' parser and Grafana's schema types live in promcheck, a module
// of its own that the tests build and ask over stdin, so that the Prometheus
// server's module stays out of the product's go.mod. It must never be
// imported by product code.
package monitoring
