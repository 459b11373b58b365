package controllers

import (
	"maps"
	"sync"

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

// recorded is the labels each Invitation's figures were last set under:
// forgetting them scans every series, so it is done only when they change
// (a pass over each of thousands of Invitations would otherwise cost
// O(Invitations) each).
var recorded = struct {
	sync.Mutex
	labels map[string]prometheus.Labels
}{labels: map[string]prometheus.Labels{}}

// recordMetrics sets inv's figures, forgetting any under an older code or
// campaign.
func recordMetrics(inv *v1alpha1.Invitation, st v1alpha1.InvitationStatus) {
	labels := prometheus.Labels{"namespace": inv.Namespace, "invitation": inv.Name, "code": inv.EffectiveCode(), "campaign": inv.Spec.Campaign}
	key := inv.Namespace + "/" + inv.Name
	recorded.Lock()
	if !maps.Equal(recorded.labels[key], labels) {
		forgetMetricsLocked(inv.Namespace, inv.Name)
		recorded.labels[key] = labels
	}
	recorded.Unlock()
	usedGauge.With(labels).Set(float64(st.Used))
	maxUsesGauge.With(labels).Set(float64(inv.Spec.MaxUses))
	mailPendingGauge.With(labels).Set(float64(st.Mail.Pending))
}

func forgetMetrics(namespace, name string) {
	recorded.Lock()
	defer recorded.Unlock()
	forgetMetricsLocked(namespace, name)
}

func forgetMetricsLocked(namespace, name string) {
	delete(recorded.labels, namespace+"/"+name)
	for _, g := range []*prometheus.GaugeVec{usedGauge, maxUsesGauge, mailPendingGauge} {
		g.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "invitation": name})
	}
}
