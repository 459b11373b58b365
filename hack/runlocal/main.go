// Command runlocal is `make run-local`: a redeemer on this machine with the
// FerretDB test bed (data kept under .dev/ferretdb) or the MongoDB in
// MONGODB_URI, loaded with the sample invitations from config/samples, the
// same Invitation files the operator applies. Ctrl-C stops everything.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/controllers"
	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address for the redeemer")
	metrics := flag.String("metrics-addr", "127.0.0.1:9090", "address for the redeemer's GET /metrics")
	samples := flag.String("samples", "config/samples", "directory of Invitation YAML files to load")
	flag.Parse()
	if err := run(*listen, *metrics, *samples); err != nil {
		fmt.Fprintln(os.Stderr, "run-local:", err)
		os.Exit(1)
	}
}

func run(listen, metrics, samples string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := testbed.ModuleRoot()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(samples) {
		samples = filepath.Join(root, samples)
	}
	mongo, err := testbed.StartMongoIn(filepath.Join(root, ".dev", "ferretdb"))
	if err != nil {
		return err
	}
	defer mongo.Stop()

	invs, err := loadSamples(samples)
	if err != nil {
		return err
	}
	store := mongostore.New(mongo.Client.Database("velvetrope"))
	for _, inv := range invs {
		if err := store.PutInvitation(ctx, inv); err != nil {
			return err
		}
	}

	bin, err := testbed.Build("./cmd/redeemer", filepath.Join(root, "bin"))
	if err != nil {
		return err
	}
	// MAIL_DIR: without a mail server the redeemer would leave every email
	// pending in MongoDB; here each one is written as a file to look at.
	redeemer, err := testbed.StartProcessEcho(os.Stderr, bin, []string{"--listen", listen, "--metrics-addr", metrics, "--drain-delay", "0s"},
		"MONGODB_URI="+mongo.URI, "MONGODB_DATABASE=velvetrope", "MAIL_DIR="+filepath.Join(root, ".dev", "mail"))
	if err != nil {
		return err
	}
	base := "http://" + redeemer.Addr
	fmt.Printf(`
VelvetRope redeemer: %s   (MongoDB: %s, database velvetrope)
Loaded %d invitations from %s.

Redeem a code:
  curl -i -X POST %s/invitations/twitter-reg1 -H 'Content-Type: application/json' -d '{"email":"player@example.com"}'
Its public status:
  curl %s/invitations/twitter-reg1
The players' landing page (open it in a browser):
  %s/invitations/twitter-reg1
The instructions email of each redemption is written to .dev/mail/ as an .eml file.
Metrics: http://%s/metrics     Ctrl-C stops everything; data stays in .dev/ (make dev-reset wipes it).

`, base, mongo.URI, len(invs), samples, base, base, base, redeemer.MetricsAddr)

	select {
	case <-ctx.Done():
	case <-redeemer.Exited():
		return fmt.Errorf("the redeemer exited: %w", redeemer.Wait(0))
	}
	redeemer.Cmd.Process.Signal(syscall.SIGTERM)
	if err := redeemer.Wait(20 * time.Second); err != nil {
		redeemer.Kill()
	}
	return nil
}

// loadSamples reads the Invitation objects in dir and maps each to its
// document exactly as the operator does in namespace default, so the local
// run and the operator agree on the data.
func loadSamples(dir string) ([]invite.Invitation, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var out []invite.Invitation
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(b, &meta); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if meta.Kind != "Invitation" {
			continue
		}
		var obj v1alpha1.Invitation
		if err := yaml.UnmarshalStrict(b, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		obj.Namespace = "default"
		inv := controllers.Document(&obj)
		if err := inv.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, inv)
	}
	return out, nil
}
