package controllers

import (
	"strings"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	if ports := c0.Ports; len(ports) != 2 || *ports[1].Name != "metrics" || *ports[1].ContainerPort != metricsPort {
		t.Error("metrics on their own port")
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
	if s := desiredService(c); s.Spec.Selector[LabelCampaign] != "twitter" || *s.Spec.Ports[0].Port != 80 {
		t.Error("Service")
	}
}
