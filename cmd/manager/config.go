package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/velvetrope/velvetrope/controllers"
	"github.com/velvetrope/velvetrope/internal/flagenv"
)

var errUsage = errors.New("usage")

type config struct {
	metricsAddr     string
	metricsSecure   bool
	probeAddr       string
	fallbackAddr    string // "0": off
	staffAddr       string // "0": off
	leaderElect     bool
	watchNamespaces []string // empty: every namespace
	mongoURI        string
	mongoDatabase   string
	usageInterval   time.Duration
	mailDelay       time.Duration
	workers         int
	fleet           controllers.FleetConfig
	routes          controllers.RouteConfig
	// The manager's own Pod (downward API), read for its image when
	// --redeemer-image is empty.
	podName, podNamespace string
	zap                   zap.Options
}

// parseConfig reads flags; every flag falls back to the environment variable
// named after it (--mongodb-uri: MONGODB_URI), and a flag given wins. A bad
// value is an error at once, before anything connects.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{
		fleet: controllers.FleetConfig{
			ImagePullPolicy: corev1.PullIfNotPresent,
			MinReplicas:     2, MaxReplicas: 20, CPUTarget: 60, PodCapacityRPS: 2000,
			CPURequest: resource.MustParse("250m"), MemoryRequest: resource.MustParse("64Mi"), MemoryLimit: resource.MustParse("256Mi"),
		},
		podName:      getenv("POD_NAME"),
		podNamespace: getenv("POD_NAMESPACE"),
	}
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.metricsAddr, "metrics-bind-address", ":8443", "metrics endpoint address (0 disables)")
	fs.BoolVar(&c.metricsSecure, "metrics-secure", true, "serve metrics over HTTPS (self-signed) to callers the API server authenticates and authorises for GET /metrics; false: plain HTTP to anyone, for local runs only")
	fs.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "health probe address")
	fs.StringVar(&c.fallbackAddr, "fallback-bind-address", ":8082", "where unknown codes are answered as a fleet answers them (the chart routes the bare /invitations prefix here); 0 disables")
	fs.StringVar(&c.staffAddr, "staff-bind-address", ":8444", "the staff API (the aggregated API staff.velvetrope.io over HTTPS, the caller authenticated by the API server and authorised with SubjectAccessReviews); 0 disables")
	fs.BoolVar(&c.leaderElect, "leader-elect", false, "elect a leader, so only one replica reconciles")
	fs.Func("watch-namespaces", "comma-separated namespaces whose Invitations and fleets the manager watches; empty: all (docs/operator.md: RBAC)", func(s string) error {
		c.watchNamespaces = nil
		for ns := range strings.SplitSeq(s, ",") {
			if ns = strings.TrimSpace(ns); ns == "" {
				continue
			}
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return fmt.Errorf("namespace %q: %s", ns, strings.Join(errs, "; "))
			}
			c.watchNamespaces = append(c.watchNamespaces, ns)
		}
		return nil
	})
	fs.StringVar(&c.mongoURI, "mongodb-uri", "", "MongoDB connection string (required)")
	fs.StringVar(&c.mongoDatabase, "mongodb-database", "velvetrope", "MongoDB database")
	fs.DurationVar(&c.usageInterval, "usage-interval", 10*time.Second, "how often an active invitation's usage is re-read (bounds status writes)")
	fs.DurationVar(&c.mailDelay, "mail-delay-alert", 10*time.Minute, "an email pending longer than this turns the MailDelivered condition False")
	fs.IntVar(&c.workers, "workers", 4, "Invitations reconciled at once")
	fs.StringVar(&c.fleet.Image, "redeemer-image", "", "image of the redeemer fleets; empty: the manager's own image, read from its Pod (POD_NAME, POD_NAMESPACE)")
	fs.StringVar(&c.fleet.MongoSecretName, "mongodb-secret-name", "velvetrope-mongodb", "Secret in each campaign's namespace holding the MongoDB URI for redeemers")
	fs.StringVar(&c.fleet.MongoSecretKey, "mongodb-secret-key", "uri", "key of that Secret")
	fs.StringVar(&c.fleet.TrustedProxies, "fleet-trusted-proxies", "", "comma-separated CIDRs of the proxies in front of the fleets (the ingress controller's pods), whose X-Forwarded-For the redeemers believe; empty: none, so behind a proxy every player shares its rate-limit bucket")
	fs.StringVar(&c.fleet.MailSecretName, "mail-secret-name", "velvetrope-mail", "optional Secret in each campaign's namespace whose keys become redeemer environment (SMTP_HOST, MAIL_TOKEN_KEY, ...); empty: none")
	fs.Var(int32Value{&c.fleet.MinReplicas}, "fleet-min-replicas", "HPA minimum outside pre-scaling")
	fs.Var(int32Value{&c.fleet.MaxReplicas}, "fleet-max-replicas", "HPA maximum")
	fs.Var(int32Value{&c.fleet.CPUTarget}, "fleet-cpu-target", "HPA average CPU utilisation target, percent of the CPU request")
	fs.Var(int32Value{&c.fleet.PodCapacityRPS}, "pod-capacity-rps", "requests per second one redeemer pod serves, for pre-scaling")
	fs.DurationVar(&c.fleet.PrescaleWindow, "prescale-window", 15*time.Minute, "how long before launchAt the fleet is scaled up")
	fs.DurationVar(&c.fleet.PrescaleHold, "prescale-hold", 30*time.Minute, "how long after launchAt a launch still holds the fleet's pre-scaled floor (the crowd arrives at launch and fades)")
	fs.DurationVar(&c.fleet.DrainDelay, "fleet-drain-delay", 5*time.Second, "redeemer drain delay after SIGTERM")
	fs.DurationVar(&c.fleet.ShutdownTimeout, "fleet-shutdown-timeout", 15*time.Second, "redeemer shutdown timeout after the drain delay")
	fs.Var(quantityValue{&c.fleet.CPURequest}, "fleet-cpu-request", "redeemer CPU request (the HPA scales on it)")
	fs.Var(quantityValue{&c.fleet.MemoryRequest}, "fleet-memory-request", "redeemer memory request")
	fs.Var(quantityValue{&c.fleet.MemoryLimit}, "fleet-memory-limit", "redeemer memory limit")
	fs.StringVar(&c.fleet.ServiceAccountName, "fleet-service-account", "", "ServiceAccount of the redeemer pods (its token is never mounted); empty: the namespace's default")
	fs.Func("fleet-image-pull-secrets", "comma-separated Secrets in each campaign's namespace for pulling the redeemer image", func(s string) error {
		c.fleet.ImagePullSecrets = nil
		return eachName(s, func(name string) error {
			c.fleet.ImagePullSecrets = append(c.fleet.ImagePullSecrets, name)
			return nil
		})
	})
	fs.BoolVar(&c.fleet.NetworkPolicy, "fleet-network-policy", true, "give each fleet a NetworkPolicy admitting only players (port http), scrapes (port metrics) and the fleet's own replicas (port peer)")
	fs.Func("route-gateways", "comma-separated Gateways (namespace/name or namespace/name/listener) each Invitation's HTTPRoute attaches to; empty: no HTTPRoutes", func(s string) error {
		c.routes.Gateways = nil
		return eachName(s, func(ref string) error {
			parts := strings.Split(ref, "/")
			if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
				return fmt.Errorf("gateway %q: want namespace/name or namespace/name/listener", ref)
			}
			g := controllers.GatewayRef{Namespace: parts[0], Name: parts[1]}
			if len(parts) == 3 {
				g.Section = parts[2]
			}
			c.routes.Gateways = append(c.routes.Gateways, g)
			return nil
		})
	})
	fs.Func("route-hostnames", "comma-separated hostnames the HTTPRoutes and Ingresses answer for; empty: any", func(s string) error {
		c.routes.Hostnames = nil
		return eachName(s, func(h string) error {
			// A wildcard (*.example.com) is valid in both kinds of route.
			if errs := validation.IsFullyQualifiedDomainName(nil, strings.TrimPrefix(h, "*.")); len(errs) > 0 {
				return fmt.Errorf("hostname %q: %s", h, errs.ToAggregate())
			}
			c.routes.Hostnames = append(c.routes.Hostnames, h)
			return nil
		})
	})
	fs.BoolVar(&c.routes.Ingress, "route-ingress", false, "make a networking.k8s.io/v1 Ingress per Invitation")
	fs.StringVar(&c.routes.IngressClass, "route-ingress-class", "", "ingressClassName of those Ingresses; empty: the cluster's default class")
	fs.StringVar(&c.routes.IngressTLSSecret, "route-ingress-tls-secret", "", "Secret (in each Invitation's namespace) with the certificate for --route-hostnames; empty: no TLS section")
	fs.Func("route-ingress-annotations", `annotations of those Ingresses, as a JSON object ({"cert-manager.io/cluster-issuer":"letsencrypt"})`, func(s string) error {
		c.routes.IngressAnnotations = nil
		if s == "" {
			return nil
		}
		return json.Unmarshal([]byte(s), &c.routes.IngressAnnotations)
	})
	c.zap.BindFlags(fs)

	if err := flagenv.Parse(fs, args, getenv, nil); err != nil {
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	// The fleets read the database the operator writes.
	c.fleet.MongoDatabase = c.mongoDatabase
	for cidr := range strings.SplitSeq(c.fleet.TrustedProxies, ",") {
		if cidr = strings.TrimSpace(cidr); cidr != "" {
			if _, err := netip.ParsePrefix(cidr); err != nil {
				return c, fmt.Errorf("%w: --fleet-trusted-proxies: %v", errUsage, err)
			}
		}
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	case c.mongoURI == "":
		return c, fmt.Errorf("%w: --mongodb-uri (or MONGODB_URI) is required", errUsage)
	case c.fleet.Image == "" && (c.podName == "" || c.podNamespace == ""):
		return c, fmt.Errorf("%w: --redeemer-image is empty and POD_NAME/POD_NAMESPACE are not set: set the flag, or give the manager its Pod's name and namespace (downward API) so it uses its own image", errUsage)
	case c.workers < 1:
		return c, fmt.Errorf("%w: --workers must be at least 1", errUsage)
	case c.fleet.MinReplicas < 1 || c.fleet.MaxReplicas < c.fleet.MinReplicas:
		return c, fmt.Errorf("%w: need 1 <= --fleet-min-replicas <= --fleet-max-replicas", errUsage)
	case c.fleet.CPUTarget < 1 || c.fleet.CPUTarget > 100:
		return c, fmt.Errorf("%w: --fleet-cpu-target must be 1..100", errUsage)
	case c.fleet.PodCapacityRPS < 1:
		return c, fmt.Errorf("%w: --pod-capacity-rps must be at least 1", errUsage)
	case c.fleet.CPURequest.Sign() <= 0 || c.fleet.MemoryRequest.Sign() <= 0:
		// The HPA scales on utilisation of the CPU request.
		return c, fmt.Errorf("%w: --fleet-cpu-request and --fleet-memory-request must be positive", errUsage)
	case c.fleet.MemoryRequest.Cmp(c.fleet.MemoryLimit) > 0:
		// The API server would refuse every fleet Deployment.
		return c, fmt.Errorf("%w: --fleet-memory-request must not exceed --fleet-memory-limit", errUsage)
	case c.usageInterval <= 0 || c.mailDelay <= 0 || c.fleet.ShutdownTimeout <= 0 || c.fleet.DrainDelay < 0 || c.fleet.PrescaleWindow < 0 ||
		c.fleet.PrescaleHold <= 0:
		return c, fmt.Errorf("%w: durations must be positive (--fleet-drain-delay and --prescale-window may be 0)", errUsage)
	}
	return c, nil
}

// eachName calls f with each non-empty item of a comma-separated list.
func eachName(list string, f func(string) error) error {
	for item := range strings.SplitSeq(list, ",") {
		if item = strings.TrimSpace(item); item != "" {
			if err := f(item); err != nil {
				return err
			}
		}
	}
	return nil
}

// int32Value is a flag for the fleet's int32 settings.
type int32Value struct{ p *int32 }

func (v int32Value) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*v.p), 10)
}

func (v int32Value) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return err
	}
	*v.p = int32(n)
	return nil
}

// quantityValue is a flag for a resource quantity (250m, 64Mi).
type quantityValue struct{ q *resource.Quantity }

func (v quantityValue) String() string {
	if v.q == nil {
		return ""
	}
	return v.q.String()
}

func (v quantityValue) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return err
	}
	*v.q = q
	return nil
}
