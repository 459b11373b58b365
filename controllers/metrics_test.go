package controllers

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

func TestInvitationMetrics(t *testing.T) {
	inv := &v1alpha1.Invitation{ObjectMeta: metav1.ObjectMeta{Namespace: "metrics-test", Name: "twitter-reg1"},
		Spec: v1alpha1.InvitationSpec{MaxUses: 1000, Campaign: "twitter"}}
	recordMetrics(inv, v1alpha1.InvitationStatus{Used: 912, Mail: v1alpha1.MailStatus{Pending: 7}})
	labels := prometheus.Labels{"namespace": "metrics-test", "invitation": "twitter-reg1", "code": "twitter-reg1", "campaign": "twitter"}
	if u, m, p := testutil.ToFloat64(usedGauge.With(labels)), testutil.ToFloat64(maxUsesGauge.With(labels)), testutil.ToFloat64(mailPendingGauge.With(labels)); u != 912 || m != 1000 || p != 7 {
		t.Errorf("used %v max %v pending %v", u, m, p)
	}
	inv.Spec.Campaign = "x"
	recordMetrics(inv, v1alpha1.InvitationStatus{Used: 913})
	mine := prometheus.Labels{"namespace": "metrics-test", "invitation": "twitter-reg1"}
	if n := usedGauge.DeletePartialMatch(mine); n != 1 {
		t.Errorf("%d series after a campaign move, want 1 (the old one forgotten)", n)
	}
	recordMetrics(inv, v1alpha1.InvitationStatus{Used: 913})
	forgetMetrics("metrics-test", "twitter-reg1")
	if n := maxUsesGauge.DeletePartialMatch(mine); n != 0 {
		t.Errorf("%d series left after deletion", n)
	}
}
