// Command manager runs the VelvetRope operator: the Invitation controller
// under a controller-runtime manager with leader election, health probes and
// authenticated metrics. Wiring only; the logic is in controllers/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/velvetrope/velvetrope/controllers"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/staff"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&cfg.zap)))
	log := ctrl.Log.WithName("setup")

	restConfig := ctrl.GetConfigOrDie()
	if cfg.fleet.Image == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		image, pull, err := ownImage(ctx, restConfig, cfg.podNamespace, cfg.podName)
		cancel()
		if err != nil {
			return err
		}
		cfg.fleet.Image, cfg.fleet.ImagePullPolicy = image, pull
		log.Info("Fleets run the manager's own image", "image", image, "pullPolicy", pull)
	}
	mgr, err := ctrl.NewManager(restConfig, managerOptions(cfg, newScheme()))
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}

	client, err := mongostore.Connect(cfg.mongoURI, "velvetrope-operator")
	if err != nil {
		return fmt.Errorf("mongodb: %w", err)
	}
	defer client.Disconnect(context.Background())
	store := mongostore.New(client.Database(cfg.mongoDatabase))

	ctx := ctrl.SetupSignalHandler()
	r := &controllers.InvitationReconciler{
		Client:         mgr.GetClient(),
		Reader:         mgr.GetAPIReader(),
		Store:          store,
		Recorder:       mgr.GetEventRecorder("velvetrope-operator"),
		Now:            time.Now,
		Fleet:          cfg.fleet,
		Routes:         cfg.routes,
		UsageInterval:  cfg.usageInterval,
		MailDelayAfter: cfg.mailDelay,
		Workers:        cfg.workers,
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if cfg.fallbackAddr != "0" {
		if err := mgr.Add(fallbackServer{addr: cfg.fallbackAddr, log: ctrl.Log.WithName("fallback")}); err != nil {
			return err
		}
	}
	if cfg.staffAddr != "0" {
		api := staff.NewHandler(staff.Handler{Store: store, User: staffUser, Log: ctrl.Log.WithName("staff"),
			Invitations: staffInvitations{client: mgr.GetClient(), recorder: mgr.GetEventRecorder("velvetrope-staff")}})
		if err := mgr.Add(staffServer{addr: cfg.staffAddr, kubeconfig: os.Getenv("KUBECONFIG"), handler: api, log: ctrl.Log.WithName("staff")}); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("Starting manager", "version", version, "database", cfg.mongoDatabase, "leaderElection", cfg.leaderElect,
		"watchNamespaces", cfg.watchNamespaces, "metricsSecure", cfg.metricsSecure)
	return mgr.Start(ctx)
}
