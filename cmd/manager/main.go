// Command manager runs the VelvetRope operator: the Invitation controller
// under a controller-runtime manager with leader election, health probes and
// metrics. Wiring only; the logic is in controllers/.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/controllers"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	var (
		metricsAddr   = fs.String("metrics-bind-address", ":8080", "metrics endpoint address (0 disables)")
		probeAddr     = fs.String("health-probe-bind-address", ":8081", "health probe address")
		leaderElect   = fs.Bool("leader-elect", false, "elect a leader, so only one replica reconciles")
		mongoURI      = fs.String("mongodb-uri", os.Getenv("MONGODB_URI"), "MongoDB connection string (env MONGODB_URI)")
		mongoDatabase = fs.String("mongodb-database", envOr("MONGODB_DATABASE", "velvetrope"), "MongoDB database")
		usageInterval = fs.Duration("usage-interval", 10*time.Second, "how often an active invitation's usage is re-read (bounds status writes)")
		mailDelay     = fs.Duration("mail-delay-alert", 10*time.Minute, "an email pending longer than this turns the MailDelivered condition False")
		workers       = fs.Int("workers", 4, "Invitations reconciled at once")
		fleet         = controllers.FleetConfig{ImagePullPolicy: corev1.PullIfNotPresent}
		cpuRequest    = fs.String("fleet-cpu-request", "250m", "redeemer CPU request (the HPA scales on it)")
		memRequest    = fs.String("fleet-memory-request", "64Mi", "redeemer memory request")
		memLimit      = fs.String("fleet-memory-limit", "256Mi", "redeemer memory limit")
	)
	fs.StringVar(&fleet.Image, "redeemer-image", "", "image of the redeemer fleets; empty: the manager's own image, read from its Pod (POD_NAME, POD_NAMESPACE)")
	fs.StringVar(&fleet.MongoSecretName, "mongodb-secret-name", "velvetrope-mongodb", "Secret in each campaign's namespace holding the MongoDB URI for redeemers")
	fs.StringVar(&fleet.MongoSecretKey, "mongodb-secret-key", "uri", "key of that Secret")
	fs.StringVar(&fleet.TrustedProxies, "fleet-trusted-proxies", "", "comma-separated CIDRs of the proxies in front of the fleets (the ingress controller's pods), whose X-Forwarded-For the redeemers believe; empty: none, so behind a proxy every player shares its rate-limit bucket")
	fs.StringVar(&fleet.MailSecretName, "mail-secret-name", "velvetrope-mail", "optional Secret in each campaign's namespace whose keys become redeemer environment (SMTP_HOST, MAIL_TOKEN_KEY, ...); empty: none")
	fleet.MongoDatabase = *mongoDatabase
	fs.Func("fleet-min-replicas", "HPA minimum outside pre-scaling (default 2)", intFlag(&fleet.MinReplicas))
	fs.Func("fleet-max-replicas", "HPA maximum (default 20)", intFlag(&fleet.MaxReplicas))
	fs.Func("fleet-cpu-target", "HPA average CPU utilisation target, percent (default 60)", intFlag(&fleet.CPUTarget))
	fs.Func("pod-capacity-rps", "requests per second one redeemer pod serves, for pre-scaling (default 2000)", intFlag(&fleet.PodCapacityRPS))
	fs.DurationVar(&fleet.PrescaleWindow, "prescale-window", 15*time.Minute, "how long before launchAt the fleet is scaled up")
	fs.DurationVar(&fleet.DrainDelay, "fleet-drain-delay", 5*time.Second, "redeemer drain delay after SIGTERM")
	fs.DurationVar(&fleet.ShutdownTimeout, "fleet-shutdown-timeout", 15*time.Second, "redeemer shutdown timeout after the drain delay")
	fleet.MinReplicas, fleet.MaxReplicas, fleet.CPUTarget, fleet.PodCapacityRPS = 2, 20, 60, 2000
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	fleet.MongoDatabase = *mongoDatabase
	for name, q := range map[string]struct {
		s   string
		dst *resource.Quantity
	}{"fleet-cpu-request": {*cpuRequest, &fleet.CPURequest}, "fleet-memory-request": {*memRequest, &fleet.MemoryRequest}, "fleet-memory-limit": {*memLimit, &fleet.MemoryLimit}} {
		v, err := resource.ParseQuantity(q.s)
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		*q.dst = v
	}
	if *mongoURI == "" {
		return fmt.Errorf("--mongodb-uri (or MONGODB_URI) is required")
	}
	for _, cidr := range strings.Split(fleet.TrustedProxies, ",") {
		if cidr = strings.TrimSpace(cidr); cidr != "" {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				return fmt.Errorf("--fleet-trusted-proxies: %w", err)
			}
		}
	}
	if fleet.MinReplicas < 1 || fleet.MaxReplicas < fleet.MinReplicas {
		return fmt.Errorf("need 1 <= --fleet-min-replicas <= --fleet-max-replicas")
	}

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	restConfig := ctrl.GetConfigOrDie()
	if fleet.Image == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		image, err := ownImage(ctx, restConfig)
		cancel()
		if err != nil {
			return err
		}
		fleet.Image = image
		log.Info("Fleets run the manager's own image", "image", fleet.Image)
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress: *probeAddr,
		LeaderElection:         *leaderElect,
		LeaderElectionID:       "velvetrope-operator.velvetrope.io",
		// Lease handover on a clean stop instead of waiting for expiry.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}

	client, err := mongostore.Connect(*mongoURI, "velvetrope-operator")
	if err != nil {
		return fmt.Errorf("mongodb: %w", err)
	}
	defer client.Disconnect(context.Background())
	store := mongostore.New(client.Database(*mongoDatabase))

	ctx := ctrl.SetupSignalHandler()
	r := &controllers.InvitationReconciler{
		Client:         mgr.GetClient(),
		Reader:         mgr.GetAPIReader(),
		Store:          store,
		Recorder:       mgr.GetEventRecorder("velvetrope-operator"),
		Now:            time.Now,
		Fleet:          fleet,
		UsageInterval:  *usageInterval,
		MailDelayAfter: *mailDelay,
		Workers:        *workers,
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("Starting manager", "version", version, "database", *mongoDatabase, "leaderElection", *leaderElect)
	return mgr.Start(ctx)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func intFlag(dst *int32) func(string) error {
	return func(s string) error {
		var v int32
		if _, err := fmt.Sscan(s, &v); err != nil {
			return err
		}
		*dst = v
		return nil
	}
}
