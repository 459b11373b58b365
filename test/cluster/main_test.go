// Package cluster is the e2e suite on a real Kubernetes node (the test bed's
// internal/testbed/node): the operator installed with its Helm chart, the
// fleets it makes running as pods from the project's image, requests
// through the campaigns' Services. Every test is bounded in requests and
// time, and sends traffic only to the node's own addresses.
package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/velvetrope/velvetrope/internal/testbed"
	"github.com/velvetrope/velvetrope/internal/testbed/node"
)

var (
	platform *node.Platform
	mongo    *testbed.Mongo
	smtp     *testbed.SMTP
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		n, err := node.Start(ctx, node.Options{Log: logf})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer n.Stop()
		if mongo, err = testbed.StartMongoAt("", net.JoinHostPort(node.HostIP, "0")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer mongo.Stop()
		smtp = &testbed.SMTP{Addr: net.JoinHostPort(node.HostIP, "0")}
		if err := smtp.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer smtp.Stop()
		// The Gateway API's CRDs, so the API server validates the
		// operator's HTTPRoutes with their own schema.
		crds, err := testbed.GatewayAPICRDs()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, crd := range crds {
			if out, err := n.KubectlCmd("apply", "--server-side", "-f", crd).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "installing %s: %v\n%s", crd, err, out)
				return 1
			}
		}
		platform, err = n.Install(ctx, node.PlatformOptions{
			MongoURI:   mongo.URI,
			Namespaces: []string{"default"},
			MailEnv: map[string]string{"SMTP_HOST": node.HostIP, "SMTP_PORT": fmt.Sprint(smtp.Port()), "SMTP_TLS": "none",
				"MAIL_TOKEN_KEY": "cluster-e2e-token-key-0123456789abcdef"},
			// Small pods: the node has two cores, and every campaign's
			// fleet has two pods.
			// The host is the players' proxy (as an ingress controller
			// would be): the crowds send X-Forwarded-For.
			Values: map[string]any{
				"manager": map[string]any{"usageInterval": usageInterval.String()},
				"fleet": map[string]any{
					"resources":      map[string]any{"requests": map[string]any{"cpu": "50m"}},
					"trustedProxies": []any{node.HostIP + "/32"}},
				// A route per Invitation, both kinds.
				"routes": map[string]any{
					"gateway": map[string]any{"enabled": true, "parentRefs": []any{map[string]any{"namespace": "velvetrope-system", "name": "front"}}},
					"ingress": map[string]any{"enabled": true, "className": "front"}}},
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}())
}

// usageInterval is the operator's --usage-interval here.
const usageInterval = 10 * time.Second

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...)
}
