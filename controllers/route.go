package controllers

import (
	"crypto/sha256"
	"encoding/hex"

	networkingv1 "k8s.io/api/networking/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

// RouteConfig is how players reach the fleets through the cluster's front
// door (manager flags): an HTTPRoute per Invitation attached to Gateways, an
// Ingress per Invitation, both, or neither (a front door kept by hand).
//
// One route per Invitation, not per campaign: a route is created, moved and
// garbage-collected with its Invitation, and an HTTPRoute holds at most 128
// matches, which a campaign of thousands of codes would overflow.
type RouteConfig struct {
	// Gateways are the HTTPRoutes' parents; none: no HTTPRoutes.
	Gateways []GatewayRef
	// Hostnames the routes answer for; none: any host.
	Hostnames []string
	// Ingress makes an Ingress per Invitation.
	Ingress            bool
	IngressClass       string
	IngressTLSSecret   string // the certificate for Hostnames; empty: plain HTTP
	IngressAnnotations map[string]string
}

// GatewayRef names a Gateway listener that HTTPRoutes attach to.
type GatewayRef struct {
	Namespace, Name string
	Section         string // a listener name; empty: every listener
}

// invitationsPath is where every code lives. Unknown codes are the chart's:
// one route for the bare prefix, to the manager's fallback port, which
// answers them as a fleet does (the documented 404). One object, because
// some Ingress controllers (ingress-nginx) refuse a host and path that
// another Ingress already has; the longer prefix of a known code wins.
const invitationsPath = "/invitations"

// routeName names an Invitation's HTTPRoute and Ingress. Object names are at
// most 253 characters; a longer one keeps a prefix and a hash.
func routeName(inv *v1alpha1.Invitation) string {
	name := "velvetrope-" + inv.Name
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(inv.Name))
	return name[:253-17] + "-" + hex.EncodeToString(sum[:8])
}

func routeLabels(inv *v1alpha1.Invitation) map[string]string {
	return fleetLabels(inv.Spec.Campaign)
}

// desiredHTTPRoute sends /invitations/<code> to the Service of inv's
// campaign.
func desiredHTTPRoute(cfg RouteConfig, inv *v1alpha1.Invitation) *gatewayv1ac.HTTPRouteApplyConfiguration {
	prefix := func(path string) *gatewayv1ac.HTTPRouteMatchApplyConfiguration {
		return gatewayv1ac.HTTPRouteMatch().WithPath(gatewayv1ac.HTTPPathMatch().
			WithType(gatewayv1.PathMatchPathPrefix).WithValue(path))
	}
	spec := gatewayv1ac.HTTPRouteSpec().
		WithRules(gatewayv1ac.HTTPRouteRule().
			WithMatches(prefix(invitationsPath + "/" + inv.EffectiveCode())).
			WithBackendRefs(gatewayv1ac.HTTPBackendRef().
				WithName(gatewayv1.ObjectName(fleetName(inv.Spec.Campaign))).WithPort(servicePort)))
	for _, g := range cfg.Gateways {
		ref := gatewayv1ac.ParentReference().WithName(gatewayv1.ObjectName(g.Name))
		if g.Namespace != "" {
			ref.WithNamespace(gatewayv1.Namespace(g.Namespace))
		}
		if g.Section != "" {
			ref.WithSectionName(gatewayv1.SectionName(g.Section))
		}
		spec.WithParentRefs(ref)
	}
	for _, h := range cfg.Hostnames {
		spec.WithHostnames(gatewayv1.Hostname(h))
	}
	return gatewayv1ac.HTTPRoute(routeName(inv), inv.Namespace).
		WithLabels(routeLabels(inv)).
		WithOwnerReferences(ownerRef(inv, true)).
		WithSpec(spec)
}

// desiredIngress is desiredHTTPRoute for Ingress controllers.
func desiredIngress(cfg RouteConfig, inv *v1alpha1.Invitation) *networkingv1ac.IngressApplyConfiguration {
	backend := networkingv1ac.IngressBackend().WithService(networkingv1ac.IngressServiceBackend().
		WithName(fleetName(inv.Spec.Campaign)).WithPort(networkingv1ac.ServiceBackendPort().WithNumber(servicePort)))
	path := func(p string) *networkingv1ac.HTTPIngressPathApplyConfiguration {
		return networkingv1ac.HTTPIngressPath().WithPath(p).WithPathType(networkingv1.PathTypePrefix).WithBackend(backend)
	}
	rule := func(host string) *networkingv1ac.IngressRuleApplyConfiguration {
		r := networkingv1ac.IngressRule().WithHTTP(networkingv1ac.HTTPIngressRuleValue().
			WithPaths(path(invitationsPath + "/" + inv.EffectiveCode())))
		if host != "" {
			r.WithHost(host)
		}
		return r
	}
	spec := networkingv1ac.IngressSpec()
	if cfg.IngressClass != "" {
		spec.WithIngressClassName(cfg.IngressClass)
	}
	if len(cfg.Hostnames) == 0 {
		spec.WithRules(rule(""))
	}
	for _, h := range cfg.Hostnames {
		spec.WithRules(rule(h))
	}
	if cfg.IngressTLSSecret != "" {
		spec.WithTLS(networkingv1ac.IngressTLS().WithHosts(cfg.Hostnames...).WithSecretName(cfg.IngressTLSSecret))
	}
	ing := networkingv1ac.Ingress(routeName(inv), inv.Namespace).
		WithLabels(routeLabels(inv)).
		WithOwnerReferences(ownerRef(inv, true)).
		WithSpec(spec)
	if len(cfg.IngressAnnotations) > 0 {
		ing.WithAnnotations(cfg.IngressAnnotations)
	}
	return ing
}

// ownerRef references inv; controller marks the one owner that manages the
// object (an Invitation's routes), as opposed to a campaign's shared fleet.
func ownerRef(inv *v1alpha1.Invitation, controller bool) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(v1alpha1.GroupVersion.String()).WithKind("Invitation").
		WithName(inv.Name).WithUID(inv.UID).
		WithController(controller).WithBlockOwnerDeletion(controller)
}
