package main

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/velvetrope/velvetrope/controllers"
)

func env(kv ...string) func(string) string {
	return func(k string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == k {
				return kv[i+1]
			}
		}
		return ""
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, env("MONGODB_URI", "mongodb://m", "POD_NAME", "op-0", "POD_NAMESPACE", "velvetrope-system"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f := c.fleet
	for _, d := range []struct {
		name      string
		got, want any
	}{
		{"metrics-bind-address", c.metricsAddr, ":8443"},
		{"metrics-secure", c.metricsSecure, true},
		{"health-probe-bind-address", c.probeAddr, ":8081"},
		{"leader-elect", c.leaderElect, false},
		{"watch-namespaces", len(c.watchNamespaces), 0},
		{"mongodb-database", c.mongoDatabase, "velvetrope"},
		{"the fleets' database", f.MongoDatabase, "velvetrope"},
		{"usage-interval", c.usageInterval, 10 * time.Second},
		{"mail-delay-alert", c.mailDelay, 10 * time.Minute},
		{"workers", c.workers, 4},
		{"redeemer-image", f.Image, ""},
		{"POD_NAME", c.podName, "op-0"},
		{"POD_NAMESPACE", c.podNamespace, "velvetrope-system"},
		{"image pull policy", f.ImagePullPolicy, corev1.PullIfNotPresent},
		{"mongodb-secret-name", f.MongoSecretName, "velvetrope-mongodb"},
		{"mongodb-secret-key", f.MongoSecretKey, "uri"},
		{"fleet-trusted-proxies", f.TrustedProxies, ""},
		{"mail-secret-name", f.MailSecretName, "velvetrope-mail"},
		{"fleet-min-replicas", f.MinReplicas, int32(2)},
		{"fleet-max-replicas", f.MaxReplicas, int32(20)},
		{"fleet-cpu-target", f.CPUTarget, int32(60)},
		{"pod-capacity-rps", f.PodCapacityRPS, int32(2000)},
		{"prescale-window", f.PrescaleWindow, 15 * time.Minute},
		{"prescale-hold", f.PrescaleHold, 30 * time.Minute},
		{"fleet-drain-delay", f.DrainDelay, 5 * time.Second},
		{"fleet-shutdown-timeout", f.ShutdownTimeout, 15 * time.Second},
		{"fleet-cpu-request", f.CPURequest.String(), "250m"},
		{"fleet-memory-request", f.MemoryRequest.String(), "64Mi"},
		{"fleet-memory-limit", f.MemoryLimit.String(), "256Mi"},
	} {
		if d.got != d.want {
			t.Errorf("--%s defaults to %v, want %v", d.name, d.got, d.want)
		}
	}
}

func TestParseConfigEnvAndFlags(t *testing.T) {
	// Every flag may come from its environment variable; a flag given wins.
	c, err := parseConfig(
		[]string{"--workers=8", "--fleet-min-replicas=3", "--fleet-memory-limit=1Gi", "--watch-namespaces", "starfall, moonrise", "--metrics-secure=false"},
		env("MONGODB_URI", "mongodb://m", "MONGODB_DATABASE", "beta", "WORKERS", "2", "FLEET_MIN_REPLICAS", "5", "FLEET_MAX_REPLICAS", "40",
			"FLEET_MEMORY_LIMIT", "512Mi", "FLEET_CPU_REQUEST", "500m", "WATCH_NAMESPACES", "ignored", "METRICS_SECURE", "true",
			"LEADER_ELECT", "true", "REDEEMER_IMAGE", "registry.example.com/vr:1", "FLEET_TRUSTED_PROXIES", "10.0.0.0/8,fd00::/64",
			"PRESCALE_WINDOW", "1h", "ZAP_LOG_LEVEL", "debug"),
		io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case c.mongoURI != "mongodb://m" || c.mongoDatabase != "beta" || c.fleet.MongoDatabase != "beta" || !c.leaderElect || c.fleet.Image != "registry.example.com/vr:1" ||
		c.fleet.MaxReplicas != 40 || c.fleet.CPURequest.Cmp(resource.MustParse("500m")) != 0 ||
		c.fleet.TrustedProxies != "10.0.0.0/8,fd00::/64" || c.fleet.PrescaleWindow != time.Hour:
		t.Errorf("environment over defaults: %+v", c)
	case c.workers != 8 || c.fleet.MinReplicas != 3 || c.fleet.MemoryLimit.String() != "1Gi" || c.metricsSecure ||
		!slices.Equal(c.watchNamespaces, []string{"starfall", "moonrise"}):
		t.Errorf("flags over environment: %+v", c)
	case c.zap.Level == nil || !c.zap.Level.Enabled(zapcore.DebugLevel):
		t.Errorf("ZAP_LOG_LEVEL=debug: %v", c.zap.Level)
	}
	// No POD_NAME needed when the image is given.
	if _, err := parseConfig([]string{"--mongodb-uri=m", "--redeemer-image=vr:1"}, env(), io.Discard); err != nil {
		t.Errorf("--redeemer-image without POD_NAME: %v", err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	pod := []string{"MONGODB_URI", "m", "POD_NAME", "op-0", "POD_NAMESPACE", "velvetrope-system"}
	for _, tt := range []struct {
		args []string
		env  []string
		want string
	}{
		{nil, pod[2:], "--mongodb-uri (or MONGODB_URI) is required"},
		{[]string{"--mongodb-uri=m"}, nil, "--redeemer-image is empty and POD_NAME/POD_NAMESPACE are not set"},
		{nil, pod[:4], "--redeemer-image is empty and POD_NAME/POD_NAMESPACE are not set"},
		{[]string{"extra"}, pod, "unexpected arguments"},
		{[]string{"--no-such-flag"}, pod, "flag provided but not defined"},
		{[]string{"--usage-interval=soon"}, pod, "invalid value"},
		{nil, slices.Concat(pod, []string{"WORKERS", "many"}), `invalid value "many" for WORKERS`},
		{nil, slices.Concat(pod, []string{"METRICS_SECURE", "perhaps"}), `invalid value "perhaps" for METRICS_SECURE`},
		{[]string{"--fleet-max-replicas=3000000000"}, pod, "invalid value"},
		{[]string{"--fleet-cpu-request=a lot"}, pod, "invalid value"},
		{[]string{"--watch-namespaces=starfall,Not_A_Namespace"}, pod, `namespace "Not_A_Namespace"`},
		{[]string{"--fleet-trusted-proxies=10.0.0.0/8,ingress"}, pod, "--fleet-trusted-proxies"},
		{[]string{"--workers=0"}, pod, "--workers must be at least 1"},
		{[]string{"--fleet-min-replicas=0"}, pod, "need 1 <= --fleet-min-replicas <= --fleet-max-replicas"},
		{[]string{"--fleet-min-replicas=5", "--fleet-max-replicas=4"}, pod, "need 1 <= --fleet-min-replicas <= --fleet-max-replicas"},
		{[]string{"--fleet-cpu-target=101"}, pod, "--fleet-cpu-target must be 1..100"},
		{[]string{"--fleet-cpu-target=0"}, pod, "--fleet-cpu-target must be 1..100"},
		{[]string{"--pod-capacity-rps=0"}, pod, "--pod-capacity-rps must be at least 1"},
		{[]string{"--fleet-cpu-request=0"}, pod, "--fleet-cpu-request and --fleet-memory-request must be positive"},
		{[]string{"--fleet-memory-request=1Gi"}, pod, "--fleet-memory-request must not exceed --fleet-memory-limit"},
		{[]string{"--usage-interval=0s"}, pod, "durations must be positive"},
		{[]string{"--mail-delay-alert=-1m"}, pod, "durations must be positive"},
		{[]string{"--fleet-shutdown-timeout=0s"}, pod, "durations must be positive"},
		{[]string{"--fleet-drain-delay=-1s"}, pod, "durations must be positive"},
		{[]string{"--prescale-window=-1s"}, pod, "durations must be positive"},
		{[]string{"--prescale-hold=0s"}, pod, "durations must be positive"},
	} {
		_, err := parseConfig(tt.args, env(tt.env...), io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfig(%q, %q) = %v, want a usage error containing %q", tt.args, tt.env, err, tt.want)
		}
	}
}

func TestParseConfigRoutes(t *testing.T) {
	c, err := parseConfig([]string{
		"--route-gateways", "edge/public/https, infra/internal", "--route-hostnames", "beta.example.com,*.play.example.com",
		"--route-ingress", "--route-ingress-class", "nginx", "--route-ingress-tls-secret", "beta-tls",
		"--route-ingress-annotations", `{"cert-manager.io/cluster-issuer":"letsencrypt"}`,
		"--fleet-service-account", "redeemer", "--fleet-image-pull-secrets", "registry-a,registry-b", "--fleet-network-policy=false",
	}, env("MONGODB_URI", "mongodb://m", "REDEEMER_IMAGE", "vr:1"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r, f := c.routes, c.fleet
	switch {
	case len(r.Gateways) != 2 || r.Gateways[0] != (controllers.GatewayRef{Namespace: "edge", Name: "public", Section: "https"}) ||
		r.Gateways[1] != (controllers.GatewayRef{Namespace: "infra", Name: "internal"}):
		t.Errorf("gateways %+v", r.Gateways)
	case !slices.Equal(r.Hostnames, []string{"beta.example.com", "*.play.example.com"}) || !r.Ingress || r.IngressClass != "nginx" || r.IngressTLSSecret != "beta-tls" ||
		r.IngressAnnotations["cert-manager.io/cluster-issuer"] != "letsencrypt":
		t.Errorf("routes %+v", r)
	case f.ServiceAccountName != "redeemer" || !slices.Equal(f.ImagePullSecrets, []string{"registry-a", "registry-b"}) || f.NetworkPolicy:
		t.Errorf("fleet %+v", f)
	}
	if c, _ := parseConfig(nil, env("MONGODB_URI", "mongodb://m", "REDEEMER_IMAGE", "vr:1"), io.Discard); len(c.routes.Gateways) != 0 || c.routes.Ingress || !c.fleet.NetworkPolicy {
		t.Error("by default no routes, and a NetworkPolicy per fleet")
	}
	for _, bad := range [][]string{
		{"--route-gateways", "public"}, {"--route-gateways", "a/b/c/d"}, {"--route-hostnames", "not a host"},
		{"--route-ingress-annotations", "cert-manager.io/cluster-issuer=x"},
	} {
		if _, err := parseConfig(bad, env("MONGODB_URI", "mongodb://m", "REDEEMER_IMAGE", "vr:1"), io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", bad, err)
		}
	}
}
