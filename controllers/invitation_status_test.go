package controllers

import (
	"errors"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/invite"
)

func TestComputeStatus(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	last := now.Add(-time.Minute)
	base := func(mutate ...func(*v1alpha1.Invitation)) *v1alpha1.Invitation {
		inv := &v1alpha1.Invitation{ObjectMeta: metav1.ObjectMeta{Name: "twitter-reg1", Generation: 3}, Spec: v1alpha1.InvitationSpec{MaxUses: 10}}
		for _, m := range mutate {
			m(inv)
		}
		return inv
	}
	seeded := func(used int) observation {
		return observation{seeded: true, usage: invite.Usage{Used: used, LastRedemption: last}}
	}
	down := errors.New("connection refused")
	tests := []struct {
		name       string
		inv        *v1alpha1.Invitation
		prev       v1alpha1.InvitationStatus
		obs        observation
		phase      v1alpha1.InvitationPhase
		used, left int32
		ready      metav1.ConditionStatus
		reason     string
		over       metav1.ConditionStatus
		observed   int64
	}{
		{"new and active", base(), v1alpha1.InvitationStatus{}, seeded(3), v1alpha1.PhaseActive, 3, 7, metav1.ConditionTrue, ReasonServing, metav1.ConditionFalse, 3},
		{"full", base(), v1alpha1.InvitationStatus{}, seeded(10), v1alpha1.PhaseExhausted, 10, 0, metav1.ConditionTrue, ReasonServing, metav1.ConditionFalse, 3},
		{"maxUses lowered below usage", base(), v1alpha1.InvitationStatus{}, seeded(12), v1alpha1.PhaseExhausted, 12, 0, metav1.ConditionTrue, ReasonServing, metav1.ConditionTrue, 3},
		{"paused", base(func(i *v1alpha1.Invitation) { i.Spec.Paused = true }), v1alpha1.InvitationStatus{}, seeded(10), v1alpha1.PhasePaused, 10, 0, metav1.ConditionTrue, ReasonServing, metav1.ConditionFalse, 3},
		{"expired beats paused", base(func(i *v1alpha1.Invitation) {
			i.Spec.Paused, i.Spec.ExpiresAt = true, &metav1.Time{Time: now}
		}), v1alpha1.InvitationStatus{}, seeded(1), v1alpha1.PhaseExpired, 1, 9, metav1.ConditionTrue, ReasonServing, metav1.ConditionFalse, 3},
		{"mongo down before first seed", base(), v1alpha1.InvitationStatus{}, observation{seedErr: down}, v1alpha1.PhasePending, 0, 10, metav1.ConditionFalse, ReasonMongoUnavailable, metav1.ConditionFalse, 0},
		{"mongo down later keeps last usage and phase", base(), v1alpha1.InvitationStatus{Used: 4, Phase: v1alpha1.PhaseActive, ObservedGeneration: 2},
			observation{seedErr: down}, v1alpha1.PhaseActive, 4, 6, metav1.ConditionFalse, ReasonMongoUnavailable, metav1.ConditionFalse, 2},
		{"usage unreadable", base(), v1alpha1.InvitationStatus{Used: 4, Phase: v1alpha1.PhaseActive},
			observation{seeded: true, usageErr: down}, v1alpha1.PhaseActive, 4, 6, metav1.ConditionFalse, ReasonMongoUnavailable, metav1.ConditionFalse, 0},
		{"code owned elsewhere", base(), v1alpha1.InvitationStatus{}, observation{seedErr: fmt.Errorf("x: %w", invite.ErrCodeTaken)},
			v1alpha1.PhasePending, 0, 10, metav1.ConditionFalse, ReasonCodeConflict, metav1.ConditionFalse, 0},
		{"fleet failed", base(), v1alpha1.InvitationStatus{}, observation{seeded: true, fleetErr: errors.New("forbidden")},
			v1alpha1.PhaseActive, 0, 10, metav1.ConditionFalse, ReasonFleetFailed, metav1.ConditionFalse, 0},
		{"a pause MongoDB did not get is not claimed", base(func(i *v1alpha1.Invitation) { i.Spec.Paused = true }),
			v1alpha1.InvitationStatus{Used: 4, Phase: v1alpha1.PhaseActive, ObservedGeneration: 2},
			observation{seedErr: down}, v1alpha1.PhaseActive, 4, 6, metav1.ConditionFalse, ReasonMongoUnavailable, metav1.ConditionFalse, 2},
		{"fleet starting", base(), v1alpha1.InvitationStatus{}, observation{seeded: true, fleetKnown: true, fleet: fleetHealth{Reason: ReasonFleetProgressing}},
			v1alpha1.PhaseActive, 0, 10, metav1.ConditionFalse, ReasonFleetProgressing, metav1.ConditionFalse, 3},
		{"fleet stuck", base(), v1alpha1.InvitationStatus{}, observation{seeded: true, fleetKnown: true, fleet: fleetHealth{Reason: "ImagePullBackOff"}},
			v1alpha1.PhaseActive, 0, 10, metav1.ConditionFalse, ReasonFleetUnavailable, metav1.ConditionFalse, 3},
		{"fleet serving", base(), v1alpha1.InvitationStatus{}, observation{seeded: true, fleetKnown: true, fleet: fleetHealth{Available: true, Ready: 2, Desired: 2}},
			v1alpha1.PhaseActive, 0, 10, metav1.ConditionTrue, ReasonServing, metav1.ConditionFalse, 3},
	}
	for _, tt := range tests {
		st := computeStatus(tt.inv, tt.prev, tt.obs, now, time.Hour)
		ready := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
		over := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionOverLimit)
		switch {
		case st.Phase != tt.phase || st.Used != tt.used || st.Remaining != tt.left:
			t.Errorf("%s: phase %s used %d remaining %d; want %s %d %d", tt.name, st.Phase, st.Used, st.Remaining, tt.phase, tt.used, tt.left)
		case ready == nil || ready.Status != tt.ready || ready.Reason != tt.reason || ready.ObservedGeneration != 3:
			t.Errorf("%s: Ready %+v; want %s/%s at generation 3", tt.name, ready, tt.ready, tt.reason)
		case over == nil || over.Status != tt.over:
			t.Errorf("%s: OverLimit %+v; want %s", tt.name, over, tt.over)
		case st.ObservedGeneration != tt.observed:
			t.Errorf("%s: observedGeneration %d; want %d", tt.name, st.ObservedGeneration, tt.observed)
		case st.Code != "twitter-reg1":
			t.Errorf("%s: code %q", tt.name, st.Code)
		}
	}
	// Recomputing from the same facts changes nothing: no status write.
	first := computeStatus(base(), v1alpha1.InvitationStatus{}, seeded(3), now, time.Hour)
	if again := computeStatus(base(), first, seeded(3), now.Add(time.Hour), time.Hour); !equalStatus(first, again) {
		t.Errorf("status not stable:\n%+v\n%+v", first, again)
	}
}

func equalStatus(a, b v1alpha1.InvitationStatus) bool {
	return a.Phase == b.Phase && a.Used == b.Used && len(a.Conditions) == len(b.Conditions) &&
		a.Conditions[0].LastTransitionTime.Equal(&b.Conditions[0].LastTransitionTime) && a.Conditions[0].Message == b.Conditions[0].Message
}

func TestTransitions(t *testing.T) {
	ready := func(s metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: s, Reason: reason}}
	}
	st := func(p v1alpha1.InvitationPhase, conds []metav1.Condition) v1alpha1.InvitationStatus {
		return v1alpha1.InvitationStatus{Phase: p, Conditions: conds}
	}
	ok := ready(metav1.ConditionTrue, ReasonServing)
	bad := ready(metav1.ConditionFalse, ReasonMongoUnavailable)
	tests := []struct {
		name       string
		prev, next v1alpha1.InvitationStatus
		want       []string
	}{
		{"seeded", st("", nil), st(v1alpha1.PhaseActive, ok), []string{"Seeded"}},
		{"seeded already full", st(v1alpha1.PhasePending, bad), st(v1alpha1.PhaseExhausted, ok), []string{"Seeded", "Exhausted"}},
		{"no change", st(v1alpha1.PhaseActive, ok), st(v1alpha1.PhaseActive, ok), nil},
		{"exhausted", st(v1alpha1.PhaseActive, ok), st(v1alpha1.PhaseExhausted, ok), []string{"Exhausted"}},
		{"expired", st(v1alpha1.PhaseActive, ok), st(v1alpha1.PhaseExpired, ok), []string{"Expired"}},
		{"paused", st(v1alpha1.PhaseActive, ok), st(v1alpha1.PhasePaused, ok), []string{"Paused"}},
		{"resumed", st(v1alpha1.PhasePaused, ok), st(v1alpha1.PhaseActive, ok), []string{"Resumed"}},
		{"mongo lost", st(v1alpha1.PhaseActive, ok), st(v1alpha1.PhaseActive, bad), []string{ReasonMongoUnavailable}},
		{"still lost: no repeat", st(v1alpha1.PhaseActive, bad), st(v1alpha1.PhaseActive, bad), nil},
		{"mongo down from the start", st("", nil), st(v1alpha1.PhasePending, bad), []string{ReasonMongoUnavailable}},
	}
	for _, tt := range tests {
		var got []string
		for _, e := range transitions(tt.prev, tt.next) {
			got = append(got, e.reason)
			if e.warning != (e.reason == ReasonMongoUnavailable) {
				t.Errorf("%s: %s warning=%v", tt.name, e.reason, e.warning)
			}
		}
		if len(got) != len(tt.want) {
			t.Errorf("%s: events %v, want %v", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: events %v, want %v", tt.name, got, tt.want)
			}
		}
	}
}

func TestMailDeliveredCondition(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	inv := &v1alpha1.Invitation{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: v1alpha1.InvitationSpec{MaxUses: 10}}
	for _, tt := range []struct {
		name   string
		mail   invite.MailCounts
		status metav1.ConditionStatus
		reason string
	}{
		{"all sent", invite.MailCounts{Sent: 5}, metav1.ConditionTrue, ReasonDelivering},
		{"pending, recent", invite.MailCounts{Sent: 5, Pending: 2, OldestPending: now.Add(-time.Minute)}, metav1.ConditionTrue, ReasonDelivering},
		{"pending too long", invite.MailCounts{Pending: 7, OldestPending: now.Add(-time.Hour)}, metav1.ConditionFalse, ReasonMailDelayed},
		{"some failed", invite.MailCounts{Sent: 4, Failed: 1}, metav1.ConditionFalse, ReasonMailFailed},
	} {
		st := computeStatus(inv, v1alpha1.InvitationStatus{}, observation{seeded: true, usage: invite.Usage{Used: 5}, mail: tt.mail}, now, 10*time.Minute)
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionMailDelivered)
		if c == nil || c.Status != tt.status || c.Reason != tt.reason {
			t.Errorf("%s: %+v, want %s/%s", tt.name, c, tt.status, tt.reason)
		}
		if st.Mail.Sent != int32(tt.mail.Sent) || st.Mail.Pending != int32(tt.mail.Pending) || st.Mail.Failed != int32(tt.mail.Failed) {
			t.Errorf("%s: counts %+v", tt.name, st.Mail)
		}
	}
}

func TestFleetConditions(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	launch := metav1.NewTime(now)
	inv := &v1alpha1.Invitation{ObjectMeta: metav1.ObjectMeta{Name: "c", Generation: 1},
		Spec: v1alpha1.InvitationSpec{MaxUses: 10, LaunchAt: &launch, ExpectedPeakRPS: 50000}}
	obs := observation{seeded: true, fleetKnown: true, fleet: fleetHealth{Reason: "CreateContainerConfigError", Message: `pod p: secret "velvetrope-mongodb" not found`},
		prescale: prescale{Floor: 10, Wanted: 50, RPS: 50000}, mailKnown: true, mailSecret: "velvetrope-mail"}
	st := computeStatus(inv, v1alpha1.InvitationStatus{}, obs, now, time.Hour)
	for typ, want := range map[string]string{
		v1alpha1.ConditionFleetAvailable: "False/CreateContainerConfigError",
		v1alpha1.ConditionScalingLimited: "True/" + ReasonMaxReplicas,
		v1alpha1.ConditionMailDelivered:  "False/" + ReasonMailNotConfigured,
	} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c == nil || string(c.Status)+"/"+c.Reason != want {
			t.Errorf("%s: %+v, want %s", typ, c, want)
		}
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionFleetAvailable); c == nil || c.Message != obs.fleet.Message {
		t.Error("FleetAvailable names the cause")
	}
	var reasons []string
	for _, e := range transitions(v1alpha1.InvitationStatus{}, st) {
		reasons = append(reasons, e.reason)
	}
	if fmt.Sprint(reasons) != fmt.Sprint([]string{"Seeded", ReasonFleetUnavailable, "CreateContainerConfigError", ReasonMailNotConfigured}) {
		t.Errorf("events %v: each cause once, as a Warning", reasons)
	}
	noLaunch := inv.DeepCopy()
	noLaunch.Spec.LaunchAt = nil
	if st := computeStatus(noLaunch, v1alpha1.InvitationStatus{}, obs, now, time.Hour); meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionScalingLimited) != nil {
		t.Error("ScalingLimited only on Invitations that declare a launch")
	}
}

func TestJudgeFleet(t *testing.T) {
	available := func(ready int32) *appsv1.Deployment {
		return &appsv1.Deployment{Status: appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: ready, AvailableReplicas: ready,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue}}}}
	}
	starting := &appsv1.Deployment{Status: appsv1.DeploymentStatus{Replicas: 2,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse}}}}
	waiting := func(reason string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "because"}}}}}}
	}
	unschedulable := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/1 nodes"}}}}
	tests := []struct {
		name      string
		d         *appsv1.Deployment
		pods      []corev1.Pod
		available bool
		reason    string
	}{
		{"serving", available(2), nil, true, ""},
		{"available but nothing ready", available(0), nil, false, ReasonFleetProgressing},
		{"scaling out: one pod serves, the Deployment is not Available", &appsv1.Deployment{Status: appsv1.DeploymentStatus{Replicas: 4, AvailableReplicas: 2,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse}}}}, nil, true, ""},
		{"not yet created", nil, nil, false, ReasonFleetProgressing},
		{"pods starting", starting, []corev1.Pod{waiting("ContainerCreating")}, false, ReasonFleetProgressing},
		{"missing Secret", starting, []corev1.Pod{waiting("ContainerCreating"), waiting("CreateContainerConfigError")}, false, "CreateContainerConfigError"},
		{"bad image", starting, []corev1.Pod{waiting("ImagePullBackOff")}, false, "ImagePullBackOff"},
		{"crash loop", starting, []corev1.Pod{waiting("CrashLoopBackOff")}, false, "CrashLoopBackOff"},
		{"no room", starting, []corev1.Pod{unschedulable}, false, corev1.PodReasonUnschedulable},
	}
	for _, tt := range tests {
		h := judgeFleet(tt.d, tt.pods)
		if h.Available != tt.available || h.Reason != tt.reason {
			t.Errorf("%s: %+v, want available=%v reason %q", tt.name, h, tt.available, tt.reason)
		}
	}
}
