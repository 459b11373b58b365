package main

import (
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/controllers"
)

// managedBy is the value of controllers.LabelManagedBy on every object the
// operator creates (controllers' unexported managedBy): the cache holds those
// objects only.
const managedBy = "velvetrope-operator"

// newScheme knows every kind the manager reads or writes.
func newScheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(gatewayv1.Install(scheme)) // HTTPRoutes, when routes go through Gateways
	return scheme
}

// managerOptions is the controller-runtime manager's configuration.
func managerOptions(c config, scheme *runtime.Scheme) ctrl.Options {
	metrics := metricsserver.Options{BindAddress: c.metricsAddr, SecureServing: c.metricsSecure}
	if c.metricsSecure {
		// Each scrape's bearer token is checked with a TokenReview and its
		// GET /metrics with a SubjectAccessReview (the manager's ClusterRole
		// allows both). With no certificate given, controller-runtime serves
		// a self-signed one it makes in memory.
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metrics,
		HealthProbeBindAddress: c.probeAddr,
		Cache:                  cacheOptions(c.watchNamespaces, len(c.routes.Gateways) > 0),
		LeaderElection:         c.leaderElect,
		LeaderElectionID:       "velvetrope-operator.velvetrope.io",
		// Lease handover on a clean stop instead of waiting for expiry.
		LeaderElectionReleaseOnCancel: true,
	}
}

// cacheOptions keeps in memory only the objects of the kinds the operator
// makes that carry its managed-by label, not every Deployment and Service of the
// cluster; with namespaces, only those namespaces (Invitations included).
func cacheOptions(namespaces []string, httpRoutes bool) cache.Options {
	owned := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{controllers.LabelManagedBy: managedBy})}
	o := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}:                     owned,
		&corev1.Service{}:                        owned,
		&autoscalingv2.HorizontalPodAutoscaler{}: owned,
		&policyv1.PodDisruptionBudget{}:          owned,
		&networkingv1.NetworkPolicy{}:            owned,
		&networkingv1.Ingress{}:                  owned,
	}}
	if httpRoutes {
		// Only then: a kind named here must have its CRD in the cluster
		// when the manager starts.
		o.ByObject[&gatewayv1.HTTPRoute{}] = owned
	}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = make(map[string]cache.Config, len(namespaces))
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return o
}
