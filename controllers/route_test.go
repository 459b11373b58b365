package controllers

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

func TestDesiredRoutes(t *testing.T) {
	inv := &v1alpha1.Invitation{ObjectMeta: metav1.ObjectMeta{Namespace: "beta", Name: "twitter-reg1", UID: "u1"},
		Spec: v1alpha1.InvitationSpec{Campaign: "twitter", MaxUses: 10}}
	cfg := RouteConfig{Gateways: []GatewayRef{{Namespace: "edge", Name: "public", Section: "https"}, {Name: "local"}},
		Hostnames: []string{"beta.example.com"}, Ingress: true, IngressClass: "nginx", IngressTLSSecret: "beta-tls",
		IngressAnnotations: map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}}

	r := desiredHTTPRoute(cfg, inv)
	if *r.Name != "velvetrope-twitter-reg1" || *r.Namespace != "beta" || !*r.OwnerReferences[0].Controller || *r.OwnerReferences[0].UID != "u1" {
		t.Fatalf("HTTPRoute %s/%s, owner %+v: named after and controlled by its Invitation", *r.Namespace, *r.Name, r.OwnerReferences)
	}
	if len(r.Spec.ParentRefs) != 2 || *r.Spec.ParentRefs[0].Namespace != "edge" || *r.Spec.ParentRefs[0].SectionName != "https" || r.Spec.ParentRefs[1].Namespace != nil {
		t.Errorf("parents %+v", r.Spec.ParentRefs)
	}
	rule := r.Spec.Rules[0]
	if len(r.Spec.Rules) != 1 || len(rule.Matches) != 1 || *rule.Matches[0].Path.Value != "/invitations/twitter-reg1" ||
		string(*rule.BackendRefs[0].Name) != "velvetrope-twitter" || *rule.BackendRefs[0].Port != 80 {
		t.Errorf("rule %+v: the code, and only it (unknown codes are the chart's one fallback route), to the campaign's Service", rule)
	}
	if string(r.Spec.Hostnames[0]) != "beta.example.com" {
		t.Error("hostnames")
	}

	ing := desiredIngress(cfg, inv)
	if *ing.Name != "velvetrope-twitter-reg1" || *ing.Spec.IngressClassName != "nginx" || ing.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" ||
		*ing.Spec.TLS[0].SecretName != "beta-tls" || ing.Spec.TLS[0].Hosts[0] != "beta.example.com" || *ing.Spec.Rules[0].Host != "beta.example.com" {
		t.Errorf("Ingress %+v", ing)
	}
	paths := ing.Spec.Rules[0].HTTP.Paths
	if len(paths) != 1 || *paths[0].Path != "/invitations/twitter-reg1" || *paths[0].Backend.Service.Name != "velvetrope-twitter" {
		t.Errorf("paths %+v", paths)
	}
	if bare := desiredIngress(RouteConfig{Ingress: true}, inv); bare.Spec.Rules[0].Host != nil || bare.Spec.TLS != nil || bare.Spec.IngressClassName != nil {
		t.Error("no host, TLS or class unless configured")
	}

	long := &v1alpha1.Invitation{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("x", 253)}}
	if n := routeName(long); len(n) != 253 || routeName(long) != n {
		t.Errorf("long name %d characters", len(n))
	}
}
