package controllers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/invite"
)

var ctx = context.Background()

func init() {
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "inv-"}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func newInvitation(ns, name string, maxUses int32, campaign string, mutate ...func(*v1alpha1.Invitation)) *v1alpha1.Invitation {
	inv := &v1alpha1.Invitation{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.InvitationSpec{MaxUses: maxUses, Campaign: campaign},
	}
	for _, m := range mutate {
		m(inv)
	}
	return inv
}

func create(inv *v1alpha1.Invitation) *v1alpha1.Invitation {
	Expect(k8sClient.Create(ctx, inv)).To(Succeed())
	return inv
}

func fetch(inv *v1alpha1.Invitation) func() (*v1alpha1.Invitation, error) {
	return func() (*v1alpha1.Invitation, error) {
		got := &v1alpha1.Invitation{}
		return got, k8sClient.Get(ctx, client.ObjectKeyFromObject(inv), got)
	}
}

func status(inv *v1alpha1.Invitation) func() v1alpha1.InvitationStatus {
	return func() v1alpha1.InvitationStatus {
		got, err := fetch(inv)()
		Expect(err).NotTo(HaveOccurred())
		return got.Status
	}
}

func readyCondition(st v1alpha1.InvitationStatus) metav1.Condition {
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// update changes an Invitation, retrying on conflicts with the controller.
func update(inv *v1alpha1.Invitation, change func(*v1alpha1.Invitation)) {
	Eventually(func() error {
		got, err := fetch(inv)()
		if err != nil {
			return err
		}
		change(got)
		return k8sClient.Update(ctx, got)
	}).Should(Succeed())
}

func stored(code string) func() invite.Invitation {
	return func() invite.Invitation {
		invs, err := store.Invitations(ctx)
		Expect(err).NotTo(HaveOccurred())
		for _, i := range invs {
			if i.Code == code {
				return i
			}
		}
		return invite.Invitation{}
	}
}

// redeem stores redemptions of code in slots first, first+1, ... through the
// redeemers' own store: what the operator must then report.
func redeem(code string, first int, emails ...string) {
	claims := make([]invite.Redemption, len(emails))
	for i, e := range emails {
		claims[i] = invite.Redemption{Code: code, Slot: first + i, Email: invite.Email{Canonical: e, Raw: e}, Nonce: e, RedeemedAt: time.Now()}
	}
	for _, r := range store.Claim(ctx, claims) {
		Expect(r.Status).To(Equal(invite.ClaimInserted))
	}
}

func reasons(ns string) func() []string {
	return func() []string {
		var list eventsv1.EventList
		Expect(k8sClient.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			out = append(out, e.Reason)
		}
		return out
	}
}

func fleetObjects(ns, campaign string) []client.Object {
	name := fleetName(campaign)
	return []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
	}
}

// serveFleet writes the status kube-controller-manager's deployment
// controller writes once a fleet's pods are ready: envtest runs no
// controllers and no pods. test/cluster shows the real thing.
func serveFleet(ns, campaign string) {
	d := fleetObjects(ns, campaign)[0].(*appsv1.Deployment)
	Eventually(exists(d)).Should(Succeed())
	Eventually(func() error {
		if err := exists(d)(); err != nil {
			return err
		}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, UpdatedReplicas: 2,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
				LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
		return k8sClient.Status().Update(ctx, d)
	}).Should(Succeed())
}

// mailServer gives ns's fleets a mail server, as the chart's mail Secret does.
func mailServer(ns string) {
	Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: testFleet.MailSecretName},
		StringData: map[string]string{"SMTP_HOST": "smtp.example.com", "MAIL_TOKEN_KEY": "envtest-token-key-0123456789abcdef0123"}})).To(Succeed())
}

func condition(typ string) func(v1alpha1.InvitationStatus) metav1.Condition {
	return func(st v1alpha1.InvitationStatus) metav1.Condition {
		if c := meta.FindStatusCondition(st.Conditions, typ); c != nil {
			return *c
		}
		return metav1.Condition{}
	}
}

func exists(obj client.Object) func() error {
	return func() error { return k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj) }
}

var _ = Describe("Invitation controller", func() {
	It("seeds MongoDB, reports status and builds the campaign's fleet", func() {
		ns := newNamespace()
		inv := create(newInvitation(ns, "launch-day", 1000, "twitter"))

		Eventually(stored("launch-day")).Should(And(
			HaveField("MaxUses", 1000), HaveField("State", invite.StateActive), HaveField("Campaign", "twitter")))
		// Not Ready until the fleet serves.
		Eventually(status(inv)).Should(And(
			HaveField("Code", "launch-day"),
			HaveField("Phase", v1alpha1.PhaseActive),
			HaveField("Remaining", int32(1000)),
			WithTransform(readyCondition, And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonFleetProgressing))),
			WithTransform(condition(v1alpha1.ConditionFleetAvailable), HaveField("Reason", ReasonFleetProgressing)),
		))
		Consistently(status(inv), time.Second).Should(WithTransform(readyCondition, HaveField("Status", metav1.ConditionFalse)))
		serveFleet(ns, "twitter")
		Eventually(status(inv)).Should(And(
			WithTransform(readyCondition, And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", ReasonServing))),
			WithTransform(condition(v1alpha1.ConditionFleetAvailable), And(HaveField("Status", metav1.ConditionTrue), HaveField("Message", "the campaign's pods serve players"))),
		))
		got, _ := fetch(inv)()
		Expect(got.Finalizers).To(ContainElement(Finalizer))
		Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		Expect(readyCondition(got.Status).ObservedGeneration).To(Equal(got.Generation))
		Eventually(reasons(ns)).Should(ContainElement("Seeded"))

		objs := fleetObjects(ns, "twitter")
		for _, o := range objs {
			Eventually(exists(o)).Should(Succeed())
		}
		d := objs[0].(*appsv1.Deployment)
		Expect(d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue()).To(Equal(0))
		pod := d.Spec.Template.Spec
		c := pod.Containers[0]
		Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
		Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
		Expect(*pod.TerminationGracePeriodSeconds).To(BeNumerically(">", int64(testFleet.DrainDelay.Seconds())))
		Expect(c.Resources.Requests).To(HaveKey(corev1.ResourceCPU))
		Expect(pod.TopologySpreadConstraints).To(HaveLen(2))
		Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
		Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(c.SecurityContext.Capabilities.Drop).To(ContainElement(corev1.Capability("ALL")))
		Expect(c.Env).To(ContainElement(HaveField("ValueFrom.SecretKeyRef.Name", "velvetrope-mongodb")))
		for _, mf := range d.ManagedFields {
			if mf.Manager == FieldOwner {
				Expect(string(mf.FieldsV1.Raw)).NotTo(ContainSubstring(`"f:replicas"`), "the controller must leave replicas to the HPA")
			}
		}
		hpa := objs[2].(*autoscalingv2.HorizontalPodAutoscaler)
		Expect(*hpa.Spec.MinReplicas).To(Equal(int32(2)))
		Expect(hpa.Spec.MaxReplicas).To(Equal(int32(10)))
		Expect(objs[3].(*policyv1.PodDisruptionBudget).Spec.MaxUnavailable.IntValue()).To(Equal(1))
		Expect(objs[4].(*networkingv1.NetworkPolicy).Spec.Ingress[0].Ports).To(HaveLen(2))
		for _, o := range objs {
			Expect(o.GetOwnerReferences()).To(ConsistOf(HaveField("UID", got.UID)), "%T is owned by the campaign's invitations", o)
		}

		// The routes, accepted by the API server with the Gateway API's CRDs.
		route := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velvetrope-launch-day"}}
		Eventually(exists(route)).Should(Succeed())
		Expect(route.Spec.Rules[0].Matches[0].Path.Value).To(HaveValue(Equal("/invitations/launch-day")))
		Expect(route.Spec.Rules[0].BackendRefs[0].Name).To(BeEquivalentTo("velvetrope-twitter"))
		Expect(route.Spec.ParentRefs[0].Name).To(BeEquivalentTo("public"))
		Expect(metav1.IsControlledBy(route, got)).To(BeTrue())
		ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velvetrope-launch-day"}}
		Eventually(exists(ing)).Should(Succeed())
		Expect(*ing.Spec.IngressClassName).To(Equal("front"))
		Expect(ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name).To(Equal("velvetrope-twitter"))
		Expect(metav1.IsControlledBy(ing, got)).To(BeTrue())

		// Moving the code to another campaign moves its route, and the
		// emptied campaign's fleet goes.
		update(inv, func(i *v1alpha1.Invitation) { i.Spec.Campaign = "telegram" })
		Eventually(func() any { Expect(exists(route)()).To(Succeed()); return route.Spec.Rules[0].BackendRefs[0].Name }).Should(BeEquivalentTo("velvetrope-telegram"))
		Eventually(func() any {
			Expect(exists(ing)()).To(Succeed())
			return ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name
		}).Should(Equal("velvetrope-telegram"))
		for _, o := range objs {
			Eventually(func() bool { return apierrors.IsNotFound(exists(o)()) }).Should(BeTrue(), "%T of the emptied campaign left behind", o)
		}
		Eventually(exists(fleetObjects(ns, "telegram")[0])).Should(Succeed())
	})

	It("shows redemptions in status and printer columns, and becomes Exhausted", func() {
		ns := newNamespace()
		inv := create(newInvitation(ns, "counted", 3, "telegram"))
		Eventually(status(inv)).Should(HaveField("Phase", v1alpha1.PhaseActive))
		redeem("counted", 0, "a@example.com", "b@example.com")
		Eventually(status(inv)).Should(And(HaveField("Used", int32(2)), HaveField("Remaining", int32(1)), HaveField("LastRedemptionTime", Not(BeNil()))))

		out := kubectlGet(ns)
		Expect(out).To(MatchRegexp(`(?m)^NAME\s+CODE\s+MAX\s+USED\s+PHASE\s+CAMPAIGN\s+AGE`))
		Expect(out).To(MatchRegexp(`(?m)^counted\s+counted\s+3\s+2\s+Active\s+telegram\s`))

		redeem("counted", 2, "c@example.com")
		Eventually(status(inv)).Should(And(HaveField("Used", int32(3)), HaveField("Phase", v1alpha1.PhaseExhausted)))
		Eventually(reasons(ns)).Should(ContainElement("Exhausted"))
	})

	It("writes maxUses, paused and expiresAt changes to MongoDB and expires on time", func() {
		ns := newNamespace()
		inv := create(newInvitation(ns, "changing", 100, "instagram", func(i *v1alpha1.Invitation) { i.Spec.Code = "insta-code" }))
		Eventually(stored("insta-code")).Should(HaveField("MaxUses", 100))

		update(inv, func(i *v1alpha1.Invitation) { i.Spec.MaxUses = 50 })
		Eventually(stored("insta-code")).Should(HaveField("MaxUses", 50))

		update(inv, func(i *v1alpha1.Invitation) { i.Spec.Paused = true })
		Eventually(stored("insta-code")).Should(HaveField("State", invite.StatePaused))
		Eventually(status(inv)).Should(HaveField("Phase", v1alpha1.PhasePaused))
		Eventually(reasons(ns)).Should(ContainElement("Paused"))

		update(inv, func(i *v1alpha1.Invitation) { i.Spec.Paused = false })
		Eventually(stored("insta-code")).Should(HaveField("State", invite.StateActive))
		Eventually(reasons(ns)).Should(ContainElement("Resumed"))

		at := metav1.NewTime(time.Now().Add(3 * time.Second).Truncate(time.Second))
		update(inv, func(i *v1alpha1.Invitation) { i.Spec.ExpiresAt = &at })
		Eventually(stored("insta-code")).Should(WithTransform(func(i invite.Invitation) bool { return i.ExpiresAt.Equal(at.Time) }, BeTrue()))
		Eventually(status(inv), 10*time.Second).Should(HaveField("Phase", v1alpha1.PhaseExpired))
		Eventually(reasons(ns)).Should(ContainElement("Expired"))
	})

	It("is validated by the API server", func() {
		ns := newNamespace()
		for _, bad := range []*v1alpha1.Invitation{
			newInvitation(ns, "zero", 0, "x"),
			newInvitation(ns, "too-many", 1001, "x"),
			newInvitation(ns, "bad.name", 10, "x"),
			newInvitation(ns, "bad-code", 10, "x", func(i *v1alpha1.Invitation) { i.Spec.Code = "Not_A_Code" }),
			newInvitation(ns, "bad-campaign", 10, "Twitter!"),
		} {
			err := k8sClient.Create(ctx, bad)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "%s: %v", bad.Name, err)
		}
		inv := create(newInvitation(ns, "fixed", 10, "x", func(i *v1alpha1.Invitation) { i.Spec.Code = "fixed-code" }))
		var err error
		Eventually(func() bool { // retry while the controller's own updates conflict
			got, _ := fetch(inv)()
			got.Spec.Code = "other-code"
			err = k8sClient.Update(ctx, got)
			return apierrors.IsConflict(err)
		}).Should(BeFalse())
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "changing spec.code: %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.code is immutable"))
		defaulted := create(newInvitation(ns, "defaulted", 10, ""))
		Expect(defaulted.Spec.Campaign).To(Equal("default"))
	})

	It("runs one fleet per campaign, owned by its oldest invitations, and hands it on as they go", func() {
		ns := newNamespace()
		a := create(newInvitation(ns, "shared-a", 10, "shared"))
		objs := fleetObjects(ns, "shared")
		Eventually(exists(objs[0])).Should(Succeed())
		b := create(newInvitation(ns, "shared-b", 10, "shared"))
		c := create(newInvitation(ns, "shared-c", 10, "shared"))
		d := create(newInvitation(ns, "shared-d", 10, "shared"))
		var deployments appsv1.DeploymentList
		Expect(k8sClient.List(ctx, &deployments, client.InNamespace(ns))).To(Succeed())
		Expect(deployments.Items).To(HaveLen(1))
		owners := func(o client.Object) func() []types.UID {
			return func() []types.UID {
				Expect(exists(o)()).To(Succeed())
				var uids []types.UID
				for _, ref := range o.GetOwnerReferences() {
					uids = append(uids, ref.UID)
				}
				return uids
			}
		}
		uids := map[*v1alpha1.Invitation]types.UID{}
		for _, inv := range []*v1alpha1.Invitation{a, b, c, d} {
			got, err := fetch(inv)()
			Expect(err).NotTo(HaveOccurred())
			uids[inv] = got.UID
		}
		uid := func(inv *v1alpha1.Invitation) types.UID { return uids[inv] }
		for _, o := range objs {
			Eventually(owners(o)).Should(HaveLen(3))
			Expect(owners(o)()).To(ContainElement(uid(a)))
		}

		// The oldest owner goes: the fleet stays, owned by those that stay.
		Expect(k8sClient.Delete(ctx, a)).To(Succeed())
		Eventually(func() bool { _, err := fetch(a)(); return apierrors.IsNotFound(err) }).Should(BeTrue())
		for _, o := range objs {
			Expect(owners(o)()).To(ConsistOf(uid(b), uid(c), uid(d)), "%T handed on before the owner went", o)
		}
		// Deleting the rest leaves the fleet to Kubernetes' garbage
		// collector (which envtest does not run; test/cluster shows it).
		for _, inv := range []*v1alpha1.Invitation{b, c, d} {
			Expect(k8sClient.Delete(ctx, inv)).To(Succeed())
		}
		for _, inv := range []*v1alpha1.Invitation{b, c, d} {
			Eventually(func() bool { _, err := fetch(inv)(); return apierrors.IsNotFound(err) }).Should(BeTrue())
		}
		var live v1alpha1.InvitationList
		Expect(k8sClient.List(ctx, &live, client.InNamespace(ns))).To(Succeed())
		Expect(live.Items).To(BeEmpty())
		for _, o := range objs {
			for _, ref := range o.GetOwnerReferences() {
				Expect([]types.UID{uid(b), uid(c), uid(d)}).To(ContainElement(ref.UID))
			}
		}
	})

	It("revokes the code on delete and keeps its redemptions", func() {
		ns := newNamespace()
		inv := create(newInvitation(ns, "to-delete", 10, "gone"))
		Eventually(status(inv)).Should(HaveField("Phase", v1alpha1.PhaseActive))
		redeem("to-delete", 0, "kept1@example.com", "kept2@example.com")
		Expect(k8sClient.Delete(ctx, inv)).To(Succeed())
		Eventually(func() bool { _, err := fetch(inv)(); return apierrors.IsNotFound(err) }).Should(BeTrue())
		Expect(stored("to-delete")()).To(HaveField("State", invite.StateRevoked))
		Expect(store.Used(ctx, "to-delete")).To(Equal(2))
	})

	It("puts back a deleted or hand-edited child", func() {
		ns := newNamespace()
		create(newInvitation(ns, "guarded", 10, "guarded"))
		objs := fleetObjects(ns, "guarded")
		d, hpa := objs[0].(*appsv1.Deployment), objs[2].(*autoscalingv2.HorizontalPodAutoscaler)
		Eventually(exists(d)).Should(Succeed())
		Eventually(exists(hpa)).Should(Succeed())
		oldUID := d.UID
		Expect(k8sClient.Delete(ctx, d)).To(Succeed())
		Eventually(func() bool {
			fresh := &appsv1.Deployment{}
			return k8sClient.Get(ctx, client.ObjectKeyFromObject(d), fresh) == nil && fresh.UID != oldUID
		}).Should(BeTrue())

		hpa.Spec.MinReplicas = ptr(int32(7))
		Expect(k8sClient.Update(ctx, hpa)).To(Succeed())
		Eventually(func() int32 { Expect(exists(hpa)()).To(Succeed()); return *hpa.Spec.MinReplicas }).Should(Equal(int32(2)))
	})

	It("reports maxUses lowered below usage without undoing anything", func() {
		ns := newNamespace()
		inv := create(newInvitation(ns, "lowered", 5, "lowered"))
		Eventually(status(inv)).Should(HaveField("Phase", v1alpha1.PhaseActive))
		redeem("lowered", 0, "l1@example.com", "l2@example.com", "l3@example.com", "l4@example.com")
		Eventually(status(inv)).Should(HaveField("Used", int32(4)))
		update(inv, func(i *v1alpha1.Invitation) { i.Spec.MaxUses = 2 })
		Eventually(status(inv)).Should(And(
			HaveField("Phase", v1alpha1.PhaseExhausted),
			HaveField("Remaining", int32(0)),
			WithTransform(func(st v1alpha1.InvitationStatus) metav1.ConditionStatus {
				return meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionOverLimit).Status
			}, Equal(metav1.ConditionTrue))))
		Expect(stored("lowered")()).To(HaveField("MaxUses", 2))
		Expect(store.Used(ctx, "lowered")).To(Equal(4))
	})

	It("does not apply an unchanged fleet again on every pass", func() {
		ns := newNamespace()
		inv := create(newInvitation(ns, "quiet", 10, "quiet"))
		serveFleet(ns, "quiet")
		Eventually(status(inv)).Should(WithTransform(readyCondition, HaveField("Status", metav1.ConditionTrue)))
		Eventually(func() int { return applies.in(ns) }).Should(BeNumerically(">=", 4)) // the four fleet objects
		// Creating them sends watch events, which re-apply each once; then
		// passes every usage interval (300 ms) apply nothing more.
		settled := func() bool {
			before := applies.in(ns)
			time.Sleep(5 * 300 * time.Millisecond)
			return applies.in(ns) == before
		}
		Eventually(settled, 15*time.Second).Should(BeTrue(), "passes over an unchanged fleet keep re-applying it")
	})

	It("makes a lowered maxUses exact in storage, whatever slots replicas try, and gives back slots revoked above it", func() {
		ns := newNamespace()
		inv := create(newInvitation(ns, "exact", 10, "exact"))
		Eventually(status(inv)).Should(HaveField("Phase", v1alpha1.PhaseActive))
		redeem("exact", 6, "h6@example.com", "h7@example.com", "h8@example.com") // holders high in the slot space
		applied := func(maxUses int32) func() bool {
			return func() bool {
				got, err := fetch(inv)()
				return err == nil && got.Spec.MaxUses == maxUses && got.Status.ObservedGeneration == got.Generation
			}
		}
		update(inv, func(i *v1alpha1.Invitation) { i.Spec.MaxUses = 5 })
		Eventually(applied(5)).Should(BeTrue())

		// A replica that never saw the change tries every slot of the old
		// limit with new people: storage lets in 5 - 3 = 2, no more.
		tryAll := func(prefix string) int {
			claims := make([]invite.Redemption, 10)
			for slot := range claims {
				e := fmt.Sprintf("%s%d@example.com", prefix, slot)
				claims[slot] = invite.Redemption{Code: "exact", Slot: slot, Email: invite.Email{Canonical: e, Raw: e}, Nonce: e, RedeemedAt: time.Now()}
			}
			n := 0
			for _, r := range store.Claim(ctx, claims) {
				if r.Status == invite.ClaimInserted {
					n++
				}
			}
			return n
		}
		Expect(tryAll("a")).To(Equal(2))
		Expect(store.Used(ctx, "exact")).To(Equal(5))
		Expect(tryAll("b")).To(Equal(0))
		Eventually(status(inv)).Should(And(HaveField("Used", int32(5)), HaveField("Phase", v1alpha1.PhaseExhausted)))

		// Revoking a holder above the limit frees one place, once.
		_, err := store.Revoke(ctx, "", "h8@example.com")
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() int { return tryAll("c") }).Should(Equal(1))
		Expect(store.Used(ctx, "exact")).To(Equal(5))

		// Raising it again opens exactly the new places.
		update(inv, func(i *v1alpha1.Invitation) { i.Spec.MaxUses = 7 })
		Eventually(applied(7)).Should(BeTrue())
		Expect(tryAll("d")).To(Equal(2))
		Expect(store.Used(ctx, "exact")).To(Equal(7))
		Expect(tryAll("f")).To(Equal(0))
	})

	It("raises the fleet's floor ahead of a launch and drops it when the campaign is done", func() {
		ns := newNamespace()
		launch := metav1.NewTime(time.Now().Add(5 * time.Minute))
		inv := create(newInvitation(ns, "launch", 100, "launch", func(i *v1alpha1.Invitation) {
			i.Spec.LaunchAt, i.Spec.ExpectedPeakRPS = &launch, 4500
		}))
		hpa := fleetObjects(ns, "launch")[2].(*autoscalingv2.HorizontalPodAutoscaler)
		Eventually(func() int32 {
			if exists(hpa)() != nil {
				return 0
			}
			return *hpa.Spec.MinReplicas
		}).Should(Equal(int32(5))) // ceil(4500 / 1000)
		update(inv, func(i *v1alpha1.Invitation) { i.Spec.Paused = true })
		Eventually(func() int32 { Expect(exists(hpa)()).To(Succeed()); return *hpa.Spec.MinReplicas }).Should(Equal(int32(2)))
	})
})

var _ = Describe("Codes and samples", func() {
	It("gives a code to the first Invitation that claims it", func() {
		first, second := newNamespace(), newNamespace()
		mine := create(newInvitation(first, "mine", 10, "x", func(i *v1alpha1.Invitation) { i.Spec.Code = "contested" }))
		Eventually(status(mine)).Should(HaveField("Phase", v1alpha1.PhaseActive))
		theirs := create(newInvitation(second, "theirs", 999, "x", func(i *v1alpha1.Invitation) { i.Spec.Code = "contested" }))
		Eventually(status(theirs)).Should(WithTransform(readyCondition, And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonCodeConflict))))
		Expect(stored("contested")()).To(And(HaveField("MaxUses", 10), HaveField("Owner", first+"/mine")))

		// Deleting the loser revokes nothing.
		Expect(k8sClient.Delete(ctx, theirs)).To(Succeed())
		Eventually(func() bool { _, err := fetch(theirs)(); return apierrors.IsNotFound(err) }).Should(BeTrue())
		Expect(stored("contested")()).To(HaveField("State", invite.StateActive))
	})

	It("serves config/samples, with live usage in kubectl get", func() {
		ns := newNamespace()
		out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig(), "apply", "-n", ns, "-k", filepath.Join("..", "config", "samples")).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		for code, max := range map[string]int{"twitter-reg1": 1000, "telegram-test": 500, "instagram-hello": 100} {
			Eventually(stored(code)).Should(And(HaveField("MaxUses", max), HaveField("State", invite.StateActive)))
		}
		redeem("twitter-reg1", 0, "first@example.com")
		Eventually(func() string { return kubectlGet(ns) }).Should(And(
			MatchRegexp(`(?m)^twitter-reg1\s+twitter-reg1\s+1000\s+1\s+Active\s+twitter\s`),
			MatchRegexp(`(?m)^telegram-test\s+telegram-test\s+500\s+0\s+Active\s+telegram\s`),
			MatchRegexp(`(?m)^instagram-hello\s+instagram-hello\s+100\s+0\s+Active\s+instagram\s`)))
		for _, campaign := range []string{"twitter", "telegram", "instagram"} {
			Eventually(exists(fleetObjects(ns, campaign)[0])).Should(Succeed())
		}
	})
})

var _ = Describe("Mail visibility", func() {
	It("counts emails and shows a stuck mail server as a condition", func() {
		ns := newNamespace()
		mailServer(ns)
		inv := create(newInvitation(ns, "mailed", 10, "mailed"))
		Eventually(status(inv)).Should(HaveField("Phase", v1alpha1.PhaseActive))
		redeem("mailed", 0, "m1@example.com", "m2@example.com")
		mailCond := func(st v1alpha1.InvitationStatus) metav1.Condition {
			if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionMailDelivered); c != nil {
				return *c
			}
			return metav1.Condition{}
		}
		Eventually(status(inv)).Should(HaveField("Mail", v1alpha1.MailStatus{Pending: 2}))
		// No dispatcher runs here: the emails wait past MailDelayAfter (2s).
		Eventually(status(inv)).Should(WithTransform(mailCond, And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonMailDelayed))))
		Eventually(reasons(ns)).Should(ContainElement(ReasonMailDelayed))

		rs, err := store.Redemptions(ctx, "mailed")
		Expect(err).NotTo(HaveOccurred())
		for _, r := range rs {
			Expect(store.RecordAttempt(ctx, r, invite.Attempt{Number: 1, State: invite.MailSent, At: time.Now()})).To(Succeed())
		}
		Eventually(status(inv)).Should(And(HaveField("Mail", v1alpha1.MailStatus{Sent: 2}),
			WithTransform(mailCond, HaveField("Status", metav1.ConditionTrue))))
	})
})

var _ = Describe("Mail without a server", func() {
	It("says emails wait in MongoDB until the mail Secret names a server", func() {
		ns := newNamespace()
		inv := create(newInvitation(ns, "unmailed", 10, "unmailed"))
		Eventually(status(inv)).Should(HaveField("Phase", v1alpha1.PhaseActive))
		redeem("unmailed", 0, "u1@example.com")
		Eventually(status(inv)).Should(And(HaveField("Mail", v1alpha1.MailStatus{Pending: 1}),
			WithTransform(condition(v1alpha1.ConditionMailDelivered), And(
				HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonMailNotConfigured),
				HaveField("Message", ContainSubstring("1 emails wait in MongoDB"))))))
		Eventually(reasons(ns)).Should(ContainElement(ReasonMailNotConfigured))
		d := fleetObjects(ns, "unmailed")[0].(*appsv1.Deployment)
		Expect(exists(d)()).To(Succeed())
		Expect(d.Spec.Template.Annotations).NotTo(HaveKey(AnnotationMailSecretVersion))
		mailServer(ns)
		Eventually(status(inv), 10*time.Second).Should(WithTransform(condition(v1alpha1.ConditionMailDelivered), HaveField("Reason", Not(Equal(ReasonMailNotConfigured)))))
		// The pods read the Secret when they start: the fleet rolls.
		Eventually(func() map[string]string { Expect(exists(d)()).To(Succeed()); return d.Spec.Template.Annotations }).Should(HaveKey(AnnotationMailSecretVersion))
	})
})

var _ = Describe("Mail templates", func() {
	It("writes a ConfigMap's templates to MongoDB and refuses invalid ones", func() {
		ns := newNamespace()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "beta-mail"},
			Data: map[string]string{"en.subject": "Your {{.GameName}} seat: {{.Code}}"}}
		Expect(k8sClient.Create(ctx, cm)).To(Succeed())
		inv := create(newInvitation(ns, "templated", 10, "templated", func(i *v1alpha1.Invitation) {
			i.Spec.Mail = &v1alpha1.MailSpec{TemplatesConfigMap: "beta-mail"}
		}))
		serveFleet(ns, "templated")
		Eventually(stored("templated")).Should(HaveField("MailTemplates", HaveKeyWithValue("en.subject", "Your {{.GameName}} seat: {{.Code}}")))
		Eventually(status(inv)).Should(WithTransform(readyCondition, HaveField("Status", metav1.ConditionTrue)))

		cm.Data = map[string]string{"en.subject": "{{.Password}}"}
		Expect(k8sClient.Update(ctx, cm)).To(Succeed())
		Eventually(status(inv)).Should(WithTransform(readyCondition, And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonTemplateInvalid))))
		Expect(stored("templated")()).To(HaveField("MailTemplates", HaveKeyWithValue("en.subject", "Your {{.GameName}} seat: {{.Code}}")),
			"the last valid templates stay in use")

		// The kill switch works while the templates are broken: pausing
		// and lowering reach MongoDB, with the last valid templates kept.
		update(inv, func(i *v1alpha1.Invitation) { i.Spec.Paused, i.Spec.MaxUses = true, 3 })
		Eventually(stored("templated")).Should(And(HaveField("State", invite.StatePaused), HaveField("MaxUses", 3),
			HaveField("MailTemplates", HaveKeyWithValue("en.subject", "Your {{.GameName}} seat: {{.Code}}"))))
		Expect(status(inv)()).To(WithTransform(readyCondition, HaveField("Reason", ReasonTemplateInvalid)))

		// A missing ConfigMap likewise.
		Expect(k8sClient.Delete(ctx, cm)).To(Succeed())
		update(inv, func(i *v1alpha1.Invitation) { i.Spec.Paused = false })
		Eventually(stored("templated")).Should(HaveField("State", invite.StateActive))
		Expect(status(inv)()).To(WithTransform(readyCondition, HaveField("Reason", ReasonTemplateInvalid)))
	})
})

// The outage spec stops the shared FerretDB server, so it runs alone (and
// not at all against an external server at MONGODB_URI).
var _ = Describe("MongoDB outage", Serial, func() {
	It("turns Ready false with a clear reason, and recovers by itself", func() {
		mongoServer.RequireOwnServer(GinkgoT())
		ns := newNamespace()
		inv := create(newInvitation(ns, "outage", 10, "outage"))
		serveFleet(ns, "outage")
		Eventually(status(inv)).Should(WithTransform(readyCondition, HaveField("Status", metav1.ConditionTrue)))

		Expect(mongoServer.Kill()).To(Succeed())
		restarted := false
		DeferCleanup(func() {
			if !restarted {
				Expect(mongoServer.Restart()).To(Succeed())
			}
		})
		Eventually(status(inv)).Should(WithTransform(readyCondition, And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonMongoUnavailable))))
		Expect(status(inv)()).To(HaveField("Phase", v1alpha1.PhaseActive), "the last known phase is kept")
		Eventually(reasons(ns)).Should(ContainElement(ReasonMongoUnavailable))

		// A deletion meanwhile waits for MongoDB, and says so.
		doomed := create(newInvitation(ns, "outage-doomed", 10, "outage"))
		Eventually(func() []string { got, _ := fetch(doomed)(); return got.Finalizers }).Should(ContainElement(Finalizer))
		Expect(k8sClient.Delete(ctx, doomed)).To(Succeed())
		Eventually(status(doomed)).Should(WithTransform(readyCondition, And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonRevokePending))))
		Eventually(reasons(ns)).Should(ContainElement(ReasonRevokePending))

		Expect(mongoServer.Restart()).To(Succeed())
		restarted = true
		Eventually(status(inv), time.Minute).Should(WithTransform(readyCondition, HaveField("Status", metav1.ConditionTrue)))
		Eventually(func() bool { _, err := fetch(doomed)(); return apierrors.IsNotFound(err) }, time.Minute).Should(BeTrue(),
			"the deletion completes once MongoDB is back (retries at most a minute apart)")
		Expect(stored("outage-doomed")()).To(HaveField("State", invite.StateRevoked))
	})
})

func ptr[T any](v T) *T { return &v }

// kubeconfig writes a kubeconfig for an admin of the envtest control plane.
func kubeconfig() string {
	user, err := testEnv.AddUser(envtest.User{Name: "tester", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	kc, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())
	return path
}

// kubectlGet is what staff see: `kubectl get inv` with the printer columns.
func kubectlGet(ns string) string {
	out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig(), "get", "inv", "-n", ns).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	return string(out)
}
