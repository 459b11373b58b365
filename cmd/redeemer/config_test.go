package main

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	c, err := parseConfig([]string{"--listen", ":9999"}, env("MONGODB_URI", "mongodb://m", "LISTEN_ADDR", ":1", "DRAIN_DELAY", "2s", "TRUSTED_PROXIES", "10.0.0.0/8, ::1/128"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.listen != ":9999" || c.mongoURI != "mongodb://m" || c.drainDelay != 2*time.Second || len(c.http.TrustedProxies) != 2 || c.mongoDatabase != "velvetrope" {
		t.Errorf("flags must win over env, env over defaults: %+v", c)
	}
	if !c.http.Folding.PlusTags || !c.http.Folding.GmailDots || c.http.RateLimit != 60 || c.http.RateLimitKeys != 65536 {
		t.Errorf("defaults: %+v", c.http)
	}
	if c.metricsAddr != ":9090" || c.mail.smtp.Host != "" || c.mail.dir != "" || !c.mail.dispatch {
		t.Errorf("defaults: metrics on %q, smtp host %q, mail dir %q, dispatch %v; want :9090, none, none, true", c.metricsAddr, c.mail.smtp.Host, c.mail.dir, c.mail.dispatch)
	}
	if c, err := parseConfig([]string{"--mongodb-uri", "m"}, env("METRICS_ADDR", "127.0.0.1:9999", "MAIL_DIR", "/tmp/mail"), io.Discard); err != nil || c.metricsAddr != "127.0.0.1:9999" || c.mail.dir != "/tmp/mail" {
		t.Errorf("METRICS_ADDR, MAIL_DIR: %q %q %v", c.metricsAddr, c.mail.dir, err)
	}
	for _, off := range []struct {
		args []string
		env  func(string) string
	}{{[]string{"--metrics-addr", ""}, env("METRICS_ADDR", ":1")}, {nil, env("METRICS_ADDR", "0")}} {
		if c, err := parseConfig(append([]string{"--mongodb-uri", "m"}, off.args...), off.env, io.Discard); err != nil || c.metricsAddr != "" {
			t.Errorf("%q with METRICS_ADDR=%q must disable metrics: %q %v", off.args, off.env("METRICS_ADDR"), c.metricsAddr, err)
		}
	}
	if c, err := parseConfig([]string{"--mongodb-uri", "m"}, env("MAIL_TOKEN_KEY", strings.Repeat("k", 32)), io.Discard); err != nil || c.mail.tokenKey != strings.Repeat("k", 32) {
		t.Errorf("MAIL_TOKEN_KEY: %q %v", c.mail.tokenKey, err)
	}
	if c, err := parseConfig([]string{"--mongodb-uri", "m"}, env("RATE_LIMIT_KEYS", "1000"), io.Discard); err != nil || c.http.RateLimitKeys != 1000 {
		t.Errorf("RATE_LIMIT_KEYS=1000: %d, %v", c.http.RateLimitKeys, err)
	}

	for _, tt := range []struct {
		args []string
		env  func(string) string
		want string
	}{
		{nil, env(), "--mongodb-uri (or MONGODB_URI) is required"},
		{[]string{"--mongodb-uri", "m", "--drain-delay", "soon"}, env(), "invalid value"},
		{[]string{"--mongodb-uri", "m"}, env("RATE_LIMIT", "-1"), "invalid value \"-1\" for RATE_LIMIT"},
		{[]string{"--mongodb-uri", "m", "--trusted-proxies", "10.0.0.1"}, env(), "invalid value"},
		{[]string{"--mongodb-uri", "m", "--batch-size", "0"}, env(), "--batch-size must be 1..1000"},
		{[]string{"--mongodb-uri", "m", "--rate-limit-keys", "0"}, env(), "--rate-limit-keys must be at least 1"},
		{[]string{"--mongodb-uri", "m"}, env("RATE_LIMIT_KEYS", "many"), "invalid value \"many\" for RATE_LIMIT_KEYS"},
		{[]string{"--mongodb-uri", "m", "--write-timeout", "0s"}, env(), "durations must be positive"},
		{[]string{"--mongodb-uri", "m", "extra"}, env(), "unexpected arguments"},
		{[]string{"--mongodb-uri", "m", "--redeem-timeout", "20s"}, env(), "--redeem-timeout must be at least --write-timeout and below --write-timeout-http"},
		{[]string{"--mongodb-uri", "m", "--redeem-timeout", "1s"}, env(), "--redeem-timeout must be at least"},
		{[]string{"--mongodb-uri", "m"}, env("MAIL_TOKEN_KEY", "too-short"), "--mail-token-key (MAIL_TOKEN_KEY) must be at least 32 bytes"},
	} {
		_, err := parseConfig(tt.args, tt.env, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfig(%q) = %v, want usage error containing %q", tt.args, err, tt.want)
		}
	}
}

func TestPeersDialTheAdvertisedAddress(t *testing.T) {
	tcp := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	for _, c := range []struct {
		flag, listen, podIP, want string
	}{
		{"peer.example:9000", "0.0.0.0:8081", "10.0.0.7", "peer.example:9000"}, // the flag wins
		{"", "127.0.0.1:43123", "", "127.0.0.1:43123"},                         // a named host: the listener itself
		{"", "[::]:8081", "10.0.0.7", "10.0.0.7:8081"},                         // every interface: the pod's IP
		{"", "0.0.0.0:8081", "fd00::7", "[fd00::7]:8081"},
		{"", "0.0.0.0:8081", "", ""}, // nowhere to be reached: an error
	} {
		got, err := advertised(c.flag, tcp(c.listen), c.podIP)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("advertised(%q, %s, %q) = %q, %v; want %q", c.flag, c.listen, c.podIP, got, err, c.want)
		}
	}
}
