// Command dev is `make dev`: the whole platform on a real Kubernetes node on
// this machine (internal/testbed/node: kubelet, containerd, scheduler,
// controller-manager, kube-proxy). It starts the FerretDB test bed (data in
// .dev/ferretdb) and a mail server writing .eml files to .dev/mail, both on
// the node's host address so pods reach them; installs the operator with the
// Helm chart from the project's image, built without Docker; applies
// config/samples; waits until the campaigns' fleets are Ready; and prints
// what to try. Ctrl-C stops everything and removes what the node made.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/velvetrope/velvetrope/internal/testbed"
	"github.com/velvetrope/velvetrope/internal/testbed/node"
)

func main() {
	dir := flag.String("dir", ".dev", "where the platform keeps its MongoDB data, mail and kubeconfig between runs")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := testbed.ModuleRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	say := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "dev: "+format+"\n", args...) }
	if err := node.Check(); err != nil {
		return fmt.Errorf("%w\n(make run-local runs one redeemer and the test bed without Kubernetes)", err)
	}

	n, err := node.Start(ctx, node.Options{Log: say})
	if err != nil {
		return err
	}
	defer n.Stop()
	say("MongoDB test bed (data in %s)…", filepath.Join(dir, "ferretdb"))
	mongo, err := testbed.StartMongoAt(filepath.Join(dir, "ferretdb"), net.JoinHostPort(node.HostIP, "0"))
	if err != nil {
		return err
	}
	defer mongo.Stop()
	mailDir := filepath.Join(dir, "mail")
	if err := os.MkdirAll(mailDir, 0o755); err != nil {
		return err
	}
	smtp := &testbed.SMTP{Addr: net.JoinHostPort(node.HostIP, "0"), Dir: mailDir}
	if err := smtp.Start(); err != nil {
		return err
	}
	defer smtp.Stop()

	p, err := n.Install(ctx, node.PlatformOptions{
		MongoURI:   mongo.URI,
		Namespaces: []string{"default"},
		MailEnv: map[string]string{"SMTP_HOST": node.HostIP, "SMTP_PORT": fmt.Sprint(smtp.Port()), "SMTP_TLS": "none",
			"MAIL_TOKEN_KEY": "make-dev-token-key-not-for-production-use"},
		Values: map[string]any{"manager": map[string]any{"replicas": 1}, "fleet": map[string]any{"minReplicas": 1}},
	})
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if b, err := os.ReadFile(n.Kubeconfig); err != nil {
		return err
	} else if err := os.WriteFile(kubeconfig, b, 0o600); err != nil {
		return err
	}
	if out, err := n.KubectlCmd("apply", "-n", "default", "-k", filepath.Join(root, "config", "samples")).CombinedOutput(); err != nil {
		return fmt.Errorf("applying config/samples: %v\n%s", err, out)
	}
	say("Waiting for the campaigns' fleets (the operator's Deployments) to be Ready…")
	urls := map[string]string{}
	for _, campaign := range []string{"twitter", "telegram", "instagram"} {
		if urls[campaign], err = p.ServiceURL(ctx, "default", campaign); err != nil {
			return fmt.Errorf("%w\n%s", err, n.Describe(ctx, "default"))
		}
	}
	fmt.Printf(`
VelvetRope is running on a real Kubernetes node: the operator (installed with the Helm chart) and each campaign's redeemer fleet as pods.

  Redeem:   curl -i -X POST %[1]s/invitations/twitter-reg1 -H 'Content-Type: application/json' -d '{"email":"player@example.com"}'
  Page:     %[1]s/invitations/twitter-reg1   (open it in a browser on this machine)
  Others:   %[2]s/invitations/telegram-test   %[3]s/invitations/instagram-hello
  Watch:    %[4]s --kubeconfig %[5]s get inv -w
  Pods:     %[4]s --kubeconfig %[5]s get pods -A
  Mail:     %[6]s/*.eml

Each URL is the campaign's Service (ClusterIP, routed to this machine's node bridge).
Ctrl-C stops everything and removes what the node made; MongoDB data and mail stay in %[7]s (make dev-reset wipes them).
`, urls["twitter"], urls["telegram"], urls["instagram"], n.Kubectl, kubeconfig, mailDir, dir)

	<-ctx.Done()
	say("Stopping…")
	return nil
}
