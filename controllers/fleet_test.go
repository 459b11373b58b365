package controllers

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

func TestPrescale(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	cfg := FleetConfig{MinReplicas: 2, MaxReplicas: 10, PodCapacityRPS: 1000, PrescaleWindow: 15 * time.Minute, PrescaleHold: 30 * time.Minute}
	inv := func(launchIn time.Duration, rps int32, mutate ...func(*v1alpha1.Invitation)) v1alpha1.Invitation {
		at := metav1.NewTime(now.Add(launchIn))
		i := v1alpha1.Invitation{Spec: v1alpha1.InvitationSpec{MaxUses: 100, LaunchAt: &at, ExpectedPeakRPS: rps}}
		for _, m := range mutate {
			m(&i)
		}
		return i
	}
	full := func(i *v1alpha1.Invitation) { i.Status.Used = 100 }
	paused := func(i *v1alpha1.Invitation) { i.Spec.Paused = true }
	tests := []struct {
		name   string
		invs   []v1alpha1.Invitation
		floor  int32
		capped bool
	}{
		{"no hints", []v1alpha1.Invitation{{Spec: v1alpha1.InvitationSpec{MaxUses: 5}}}, 2, false},
		{"launch far ahead", []v1alpha1.Invitation{inv(time.Hour, 5000)}, 2, false},
		{"inside the window", []v1alpha1.Invitation{inv(10*time.Minute, 4500)}, 5, false},
		{"just after launch, still open", []v1alpha1.Invitation{inv(-10*time.Minute, 4500)}, 5, false},
		{"long after launch: back to normal", []v1alpha1.Invitation{inv(-time.Hour, 4500)}, 2, false},
		{"only launches in their window count", []v1alpha1.Invitation{inv(5*time.Minute, 3000), inv(time.Hour, 3000), inv(-2*time.Hour, 3000)}, 3, false},
		{"summed over the window", []v1alpha1.Invitation{inv(5*time.Minute, 3000), inv(-5*time.Minute, 3000)}, 6, false},
		{"capped at max, and says so", []v1alpha1.Invitation{inv(0, 50000)}, 10, true},
		{"never below min", []v1alpha1.Invitation{inv(0, 10)}, 2, false},
		{"full invitations need no pods", []v1alpha1.Invitation{inv(0, 9000, full)}, 2, false},
		{"paused ones neither", []v1alpha1.Invitation{inv(0, 9000, paused), inv(0, 3000)}, 3, false},
	}
	for _, tt := range tests {
		if got := prescaleAt(cfg, tt.invs, now); got.Floor != tt.floor || got.Capped() != tt.capped {
			t.Errorf("%s: floor %d capped %v, want %d %v", tt.name, got.Floor, got.Capped(), tt.floor, tt.capped)
		}
	}
	for _, tt := range []struct {
		name string
		invs []v1alpha1.Invitation
		want time.Time
	}{
		{"the start of a window", []v1alpha1.Invitation{inv(time.Hour, 1), inv(-time.Hour, 1)}, now.Add(45 * time.Minute)},
		{"the end of one", []v1alpha1.Invitation{inv(-10*time.Minute, 1)}, now.Add(20 * time.Minute)},
		{"none", []v1alpha1.Invitation{inv(-time.Hour, 1)}, time.Time{}},
	} {
		if next := nextFleetChange(cfg, tt.invs, now); !next.Equal(tt.want) {
			t.Errorf("%s: nextFleetChange = %v, want %v", tt.name, next, tt.want)
		}
	}
}

func TestOwners(t *testing.T) {
	at := func(min int) metav1.Time { return metav1.NewTime(time.Date(2026, 11, 22, 12, min, 0, 0, time.UTC)) }
	c := campaign{Namespace: "beta", Name: "twitter", Invitations: []v1alpha1.Invitation{
		{ObjectMeta: metav1.ObjectMeta{Name: "d", UID: "4", CreationTimestamp: at(4)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b", UID: "2", CreationTimestamp: at(1)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a", UID: "1", CreationTimestamp: at(1)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "c", UID: "3", CreationTimestamp: at(3)}},
	}}
	var got []string
	for _, o := range owners(c) {
		got = append(got, *o.Name)
		if *o.Controller || *o.BlockOwnerDeletion || *o.Kind != "Invitation" {
			t.Errorf("owner %s: a campaign's fleet has no controller", *o.Name)
		}
	}
	if strings.Join(got, ",") != "a,b,c" {
		t.Errorf("owners %v, want the three oldest, a,b,c", got)
	}
	if len(owners(campaign{})) != 0 {
		t.Error("no invitations, no owners")
	}
	d, s, h, p, n := desiredDeployment(testFleet, c, ""), desiredService(c), desiredHPA(testFleet, c, 2), desiredPDB(c), desiredNetworkPolicy(c)
	for kind, refs := range map[string]int{"Deployment": len(d.OwnerReferences), "Service": len(s.OwnerReferences),
		"HPA": len(h.OwnerReferences), "PDB": len(p.OwnerReferences), "NetworkPolicy": len(n.OwnerReferences)} {
		if refs != fleetOwners {
			t.Errorf("%s has %d owners, want %d", kind, refs, fleetOwners)
		}
	}
}

func TestDesiredFleet(t *testing.T) {
	c := campaign{Namespace: "beta", Name: "twitter"}
	d := desiredDeployment(testFleet, c, "")
	if *d.Name != "velvetrope-twitter" || *d.Namespace != "beta" {
		t.Fatalf("name %s/%s", *d.Namespace, *d.Name)
	}
	if d.Spec.Replicas != nil {
		t.Error("replicas must be left to the HPA")
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("maxUnavailable %v, want 0", ru.MaxUnavailable)
	}
	pod := d.Spec.Template.Spec
	c0 := pod.Containers[0]
	if *c0.ReadinessProbe.HTTPGet.Path != "/readyz" || *c0.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes")
	}
	if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= testFleet.DrainDelay+testFleet.ShutdownTimeout {
		t.Errorf("grace %v must exceed drain delay + shutdown timeout", grace)
	}
	if !*c0.SecurityContext.ReadOnlyRootFilesystem || *c0.SecurityContext.AllowPrivilegeEscalation || c0.SecurityContext.Capabilities.Drop[0] != "ALL" || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("security context")
	}
	for k, v := range d.Spec.Selector.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("pod template lacks selector label %s=%s", k, v)
		}
	}
	var secretRef bool
	for _, e := range c0.Env {
		if *e.Name == "MONGODB_URI" {
			secretRef = e.ValueFrom != nil && *e.ValueFrom.SecretKeyRef.Name == testFleet.MongoSecretName && e.Value == nil
		}
	}
	if !secretRef {
		t.Error("MONGODB_URI must come from the Secret, never inline")
	}
	if len(c0.EnvFrom) != 1 || *c0.EnvFrom[0].SecretRef.Name != "velvetrope-mail" || !*c0.EnvFrom[0].SecretRef.Optional {
		t.Error("mail settings come from the optional mail Secret")
	}
	for _, e := range c0.Env {
		if *e.Name == "MAIL_DIR" {
			t.Error("no mail spool: emails without a mail server wait in MongoDB, not in a volume that dies with the pod")
		}
	}
	if len(pod.Volumes) != 0 || *pod.AutomountServiceAccountToken || pod.ServiceAccountName != nil || len(pod.ImagePullSecrets) != 0 {
		t.Error("no volumes, no API token, the namespace's ServiceAccount unless configured")
	}
	if ports := c0.Ports; len(ports) != 3 || *ports[1].Name != "metrics" || *ports[1].ContainerPort != metricsPort {
		t.Error("metrics on their own port")
	}
	if ports := c0.Ports; len(ports) != 3 || *ports[2].Name != "peer" || *ports[2].ContainerPort != 8081 || *ports[2].Protocol != corev1.ProtocolTCP {
		t.Error("the peer port: peer, TCP 8081")
	}
	env := map[string]*corev1ac.EnvVarApplyConfiguration{}
	for i := range c0.Env {
		env[*c0.Env[i].Name] = &c0.Env[i]
	}
	if e := env["PEER_LISTEN"]; e == nil || e.Value == nil || *e.Value != ":8081" {
		t.Error("PEER_LISTEN=:8081: every replica listens for its peers")
	}
	if e := env["POD_IP"]; e == nil || e.Value != nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || *e.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Error("POD_IP from the downward API (status.podIP): the address the other replicas dial")
	}
	for _, tsc := range pod.TopologySpreadConstraints {
		if len(tsc.MatchLabelKeys) != 1 || tsc.MatchLabelKeys[0] != "pod-template-hash" {
			t.Error("each rollout spreads on its own (matchLabelKeys: [pod-template-hash])")
		}
	}
	if d.Spec.Template.Annotations != nil {
		t.Error("no mail Secret, no version annotation")
	}
	if a := desiredDeployment(testFleet, c, "42").Spec.Template.Annotations; a[AnnotationMailSecretVersion] != "42" {
		t.Errorf("annotations %v: a changed mail Secret must roll the fleet", a)
	}
	custom := testFleet
	custom.ServiceAccountName, custom.ImagePullSecrets = "redeemer", []string{"registry-a", "registry-b"}
	if pod := desiredDeployment(custom, c, "").Spec.Template.Spec; *pod.ServiceAccountName != "redeemer" || len(pod.ImagePullSecrets) != 2 || *pod.ImagePullSecrets[1].Name != "registry-b" {
		t.Error("configured ServiceAccount and imagePullSecrets")
	}
	if h := desiredHPA(testFleet, c, 12); *h.Spec.MinReplicas != 12 || *h.Spec.MaxReplicas != 12 {
		t.Errorf("a floor above max raises max too: min %d max %d", *h.Spec.MinReplicas, *h.Spec.MaxReplicas)
	}
	if p := desiredPDB(c); p.Spec.MaxUnavailable.IntValue() != 1 || p.Spec.Selector.MatchLabels[LabelCampaign] != "twitter" ||
		*p.Spec.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow {
		t.Error("PDB: one pod at a time, and unready pods never block a drain")
	}
	for _, e := range c0.Env {
		if *e.Name == "TRUSTED_PROXIES" {
			t.Error("no trusted proxies unless configured")
		}
	}
	behind := testFleet
	behind.TrustedProxies = "10.42.0.0/16"
	var trusted string
	for _, e := range desiredDeployment(behind, c, "").Spec.Template.Spec.Containers[0].Env {
		if *e.Name == "TRUSTED_PROXIES" {
			trusted = *e.Value
		}
	}
	if trusted != "10.42.0.0/16" {
		t.Errorf("TRUSTED_PROXIES %q: the fleet believes the configured proxies", trusted)
	}
	if s := desiredService(c); s.Spec.Selector[LabelCampaign] != "twitter" || len(s.Spec.Ports) != 1 || *s.Spec.Ports[0].Port != 80 ||
		s.Spec.Ports[0].TargetPort.String() != "http" {
		t.Error("Service: http only, the peer port is pod to pod")
	}
}

func TestDesiredNetworkPolicy(t *testing.T) {
	c := campaign{Namespace: "beta", Name: "twitter"}
	n := desiredNetworkPolicy(c)
	if len(n.Spec.PolicyTypes) != 1 || n.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Errorf("policy types %v, want Ingress", n.Spec.PolicyTypes)
	}
	ports := func(r networkingv1ac.NetworkPolicyIngressRuleApplyConfiguration) string {
		var names []string
		for _, p := range r.Ports {
			if *p.Protocol != corev1.ProtocolTCP {
				t.Errorf("port %s: TCP", p.Port.String())
			}
			names = append(names, p.Port.String())
		}
		return strings.Join(names, ",")
	}
	rules := n.Spec.Ingress
	if len(rules) != 2 {
		t.Fatalf("%d ingress rules, want 2: players and scrapes, the fleet's own replicas", len(rules))
	}
	if got := ports(rules[0]); got != "http,metrics" || len(rules[0].From) != 0 {
		t.Errorf("first rule: ports %s from %d peers, want http,metrics from anywhere", got, len(rules[0].From))
	}
	if got := ports(rules[1]); got != "peer" {
		t.Errorf("second rule: ports %s, want peer", got)
	}
	if from := rules[1].From; len(from) != 1 || from[0].PodSelector == nil || from[0].NamespaceSelector != nil || from[0].IPBlock != nil ||
		!maps.Equal(from[0].PodSelector.MatchLabels, selectorLabels("twitter")) || len(from[0].PodSelector.MatchExpressions) != 0 {
		t.Fatalf("peer port from %d peers (%s), want only the same fleet's pods in its namespace", len(from), describePeers(from))
	}
	// The rule must admit the pods the Deployment makes.
	tmpl := desiredDeployment(testFleet, c, "").Spec.Template.Labels
	for k, v := range rules[1].From[0].PodSelector.MatchLabels {
		if tmpl[k] != v {
			t.Errorf("the peer rule selects %s=%s, which the fleet's pods lack", k, v)
		}
	}
	if other := desiredNetworkPolicy(campaign{Namespace: "beta", Name: "other"}); other.Spec.Ingress[1].From[0].PodSelector.MatchLabels[LabelCampaign] != "other" {
		t.Error("each fleet admits only its own replicas on the peer port")
	}
}

func describePeers(peers []networkingv1ac.NetworkPolicyPeerApplyConfiguration) string {
	var parts []string
	for _, p := range peers {
		var d []string
		if p.PodSelector != nil {
			d = append(d, fmt.Sprintf("pods %v", p.PodSelector.MatchLabels))
		}
		if p.NamespaceSelector != nil {
			d = append(d, fmt.Sprintf("namespaces %v", p.NamespaceSelector.MatchLabels))
		}
		if p.IPBlock != nil {
			d = append(d, "ipBlock "+*p.IPBlock.CIDR)
		}
		parts = append(parts, strings.Join(d, " in "))
	}
	return strings.Join(parts, "; ")
}
