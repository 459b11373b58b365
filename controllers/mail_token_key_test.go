package controllers

import (
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
	"github.com/velvetrope/velvetrope/internal/invite"
)

func TestMailSetupOf(t *testing.T) {
	for _, tt := range []struct {
		name string
		data map[string][]byte
		want mailSetup
	}{
		{"no Secret", nil, mailSetup{}},
		{"a server and a key", map[string][]byte{"SMTP_HOST": []byte("smtp"), "MAIL_TOKEN_KEY": []byte("k")}, mailSetup{SMTPHost: true, TokenKey: true}},
		{"a server only", map[string][]byte{"SMTP_HOST": []byte("smtp"), "SMTP_PORT": []byte("25")}, mailSetup{SMTPHost: true}},
		{"an empty key is none", map[string][]byte{"SMTP_HOST": []byte("smtp"), "MAIL_TOKEN_KEY": {}}, mailSetup{SMTPHost: true}},
		{"a key only", map[string][]byte{"MAIL_TOKEN_KEY": []byte("k")}, mailSetup{TokenKey: true}},
	} {
		if got := mailSetupOf(&corev1.Secret{Data: tt.data}); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestMailTokenKeyMissing: a mail Secret with SMTP_HOST but no
// MAIL_TOKEN_KEY makes MailDelivered False with its own reason, a Warning
// once; no server at all stays MailNotConfigured.
func TestMailTokenKeyMissing(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	inv := &v1alpha1.Invitation{ObjectMeta: metav1.ObjectMeta{Name: "c", Generation: 1}, Spec: v1alpha1.InvitationSpec{MaxUses: 10}}
	for _, tt := range []struct {
		name   string
		known  bool
		setup  mailSetup
		status metav1.ConditionStatus
		reason string
	}{
		{"server and key", true, mailSetup{SMTPHost: true, TokenKey: true}, metav1.ConditionTrue, ReasonDelivering},
		{"server, no key", true, mailSetup{SMTPHost: true}, metav1.ConditionFalse, ReasonTokenKeyMissing},
		{"no server, no key", true, mailSetup{}, metav1.ConditionFalse, ReasonMailNotConfigured},
		{"a key, no server", true, mailSetup{TokenKey: true}, metav1.ConditionFalse, ReasonMailNotConfigured},
		{"the Secret unreadable: nothing claimed", false, mailSetup{}, metav1.ConditionTrue, ReasonDelivering},
	} {
		obs := observation{seeded: true, usage: invite.Usage{Used: 3}, mail: invite.MailCounts{Pending: 3, OldestPending: now.Add(-time.Second)},
			mailKnown: tt.known, mailConfigured: tt.setup, mailSecret: "velvetrope-mail"}
		st := computeStatus(inv, v1alpha1.InvitationStatus{}, obs, now, time.Hour)
		c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionMailDelivered)
		if c == nil || c.Status != tt.status || c.Reason != tt.reason {
			t.Errorf("%s: %+v, want %s/%s", tt.name, c, tt.status, tt.reason)
			continue
		}
		if tt.reason != ReasonTokenKeyMissing {
			continue
		}
		for _, want := range []string{"velvetrope-mail", "SMTP_HOST but no MAIL_TOKEN_KEY", "3 wait in MongoDB", "docs/registration.md"} {
			if !strings.Contains(c.Message, want) {
				t.Errorf("%s: message %q lacks %q", tt.name, c.Message, want)
			}
		}
		var warned []string
		for _, e := range transitions(v1alpha1.InvitationStatus{Phase: st.Phase}, st) {
			if e.warning {
				warned = append(warned, e.reason)
			}
		}
		if len(warned) != 1 || warned[0] != ReasonTokenKeyMissing {
			t.Errorf("%s: warnings %v, want one %s", tt.name, warned, ReasonTokenKeyMissing)
		}
		if evs := transitions(st, computeStatus(inv, st, obs, now.Add(time.Minute), time.Hour)); len(evs) != 0 {
			t.Errorf("%s: the next pass, nothing changed, emits %+v", tt.name, evs)
		}
	}
}

var _ = Describe("Mail without a token key", func() {
	It("says emails wait until the mail Secret has MAIL_TOKEN_KEY, with a Warning", func() {
		ns := newNamespace()
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: testFleet.MailSecretName},
			StringData: map[string]string{"SMTP_HOST": "smtp.example.com"}}
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		inv := create(newInvitation(ns, "keyless", 10, "keyless"))
		Eventually(status(inv)).Should(HaveField("Phase", v1alpha1.PhaseActive))
		redeem("keyless", 0, "k1@example.com")
		Eventually(status(inv)).Should(And(HaveField("Mail", v1alpha1.MailStatus{Pending: 1}),
			WithTransform(condition(v1alpha1.ConditionMailDelivered), And(
				HaveField("Status", metav1.ConditionFalse), HaveField("Reason", ReasonTokenKeyMissing),
				HaveField("Message", ContainSubstring("has SMTP_HOST but no MAIL_TOKEN_KEY")),
				HaveField("Message", ContainSubstring("1 wait in MongoDB"))))))
		Eventually(func() []string {
			var list eventsv1.EventList
			Expect(k8sClient.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
			var warnings []string
			for _, e := range list.Items {
				if e.Type == corev1.EventTypeWarning {
					warnings = append(warnings, e.Reason)
				}
			}
			return warnings
		}).Should(ContainElement(ReasonTokenKeyMissing))

		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
		secret.StringData = map[string]string{"MAIL_TOKEN_KEY": "envtest-token-key-0123456789abcdef0123"}
		Expect(k8sClient.Update(ctx, secret)).To(Succeed())
		// No dispatcher runs here: the email stays pending (MailDelayed once
		// it is old), but no longer for want of a key.
		Eventually(status(inv), 10*time.Second).Should(WithTransform(condition(v1alpha1.ConditionMailDelivered),
			HaveField("Reason", Not(Equal(ReasonTokenKeyMissing)))))
	})
})
