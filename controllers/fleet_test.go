package controllers

import (
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

func TestFloor(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	cfg := FleetConfig{MinReplicas: 2, MaxReplicas: 10, PodCapacityRPS: 1000, PrescaleWindow: 15 * time.Minute}
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
		name string
		invs []v1alpha1.Invitation
		want int32
	}{
		{"no hints", []v1alpha1.Invitation{{Spec: v1alpha1.InvitationSpec{MaxUses: 5}}}, 2},
		{"launch far ahead", []v1alpha1.Invitation{inv(time.Hour, 5000)}, 2},
		{"inside the window", []v1alpha1.Invitation{inv(10*time.Minute, 4500)}, 5},
		{"after launch, still open", []v1alpha1.Invitation{inv(-time.Hour, 4500)}, 5},
		{"summed over the campaign", []v1alpha1.Invitation{inv(5*time.Minute, 3000), inv(time.Hour, 3000)}, 6},
		{"capped at max", []v1alpha1.Invitation{inv(0, 50000)}, 10},
		{"never below min", []v1alpha1.Invitation{inv(0, 10)}, 2},
		{"full invitations need no pods", []v1alpha1.Invitation{inv(0, 9000, full)}, 2},
		{"paused ones neither", []v1alpha1.Invitation{inv(0, 9000, paused), inv(0, 3000)}, 3},
	}
	for _, tt := range tests {
		if got := floor(cfg, tt.invs, now); got != tt.want {
			t.Errorf("%s: floor %d, want %d", tt.name, got, tt.want)
		}
	}
	if next := nextFleetChange(cfg, []v1alpha1.Invitation{inv(time.Hour, 1), inv(-time.Hour, 1)}, now); !next.Equal(now.Add(45 * time.Minute)) {
		t.Errorf("nextFleetChange = %v, want the start of the window, %v", next, now.Add(45*time.Minute))
	}
}

func TestDesiredFleet(t *testing.T) {
	c := campaign{Namespace: "beta", Name: "twitter"}
	d := desiredDeployment(testFleet, c)
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
	if len(c0.VolumeMounts) != 1 || len(pod.Volumes) != 1 || pod.Volumes[0].EmptyDir == nil {
		t.Error("the mail spool is an emptyDir: the root filesystem is read-only")
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
	for _, e := range desiredDeployment(behind, c).Spec.Template.Spec.Containers[0].Env {
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
