package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

// Per-Invitation figures, as its status shows them, for dashboards and
// alerts (a code nearly full, mail waiting): the manager serves them with
// controller-runtime's own metrics. Labels are bounded by the number of
// Invitations; never an email.
var (
	invitationLabels = []string{"namespace", "invitation", "code", "campaign"}
	usedGauge        = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "velvetrope_invitation_used",
		Help: "Redemptions of the Invitation's code, as its status shows them.",
	}, invitationLabels)
	maxUsesGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "velvetrope_invitation_max_uses",
		Help: "The Invitation's spec.maxUses.",
	}, invitationLabels)
	mailPendingGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "velvetrope_invitation_mail_pending",
		Help: "Instructions emails of the Invitation's code not sent yet.",
	}, invitationLabels)
)

func init() {
	metrics.Registry.MustRegister(usedGauge, maxUsesGauge, mailPendingGauge)
}

// recordMetrics sets inv's figures, forgetting any under an older code or
// campaign.
func recordMetrics(inv *v1alpha1.Invitation, st v1alpha1.InvitationStatus) {
	forgetMetrics(inv.Namespace, inv.Name)
	labels := prometheus.Labels{"namespace": inv.Namespace, "invitation": inv.Name, "code": inv.EffectiveCode(), "campaign": inv.Spec.Campaign}
	usedGauge.With(labels).Set(float64(st.Used))
	maxUsesGauge.With(labels).Set(float64(inv.Spec.MaxUses))
	mailPendingGauge.With(labels).Set(float64(st.Mail.Pending))
}

func forgetMetrics(namespace, name string) {
	for _, g := range []*prometheus.GaugeVec{usedGauge, maxUsesGauge, mailPendingGauge} {
		g.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "invitation": name})
	}
}
