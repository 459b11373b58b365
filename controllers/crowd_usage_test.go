package controllers

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

// After a crowd over 20 codes on a busy test bed, the board read each
// changed code's details one after another (five full scans each), and
// statuses showed the redemptions minutes late. Now a refresh reads the two
// summaries and, for all changed codes at once, one query of their times.
var _ = Describe("A crowd over many codes", Serial, func() {
	It("shows every code's redemptions, reading the changed codes' times once per refresh", func() {
		ns := newNamespace()
		const n = 24
		invs := make([]*v1alpha1.Invitation, n)
		for i := range invs {
			invs[i] = create(newInvitation(ns, fmt.Sprintf("crowd-%d", i), 10, "crowd"))
		}
		serveFleet(ns, "crowd")
		for _, inv := range invs {
			Eventually(status(inv)).Should(WithTransform(readyCondition, HaveField("Status", metav1.ConditionTrue)))
		}

		refreshes, times, codes := summaries.tallies.Load(), summaries.times.Load(), summaries.timesCodes.Load()
		for i, inv := range invs {
			redeem(inv.Name, 0, fmt.Sprintf("crowd%d-a@example.com", i), fmt.Sprintf("crowd%d-b@example.com", i))
		}
		for _, inv := range invs {
			Eventually(status(inv)).Should(And(HaveField("Used", int32(2)), HaveField("Remaining", int32(8)),
				HaveField("LastRedemptionTime", Not(BeNil())), HaveField("Mail", v1alpha1.MailStatus{Pending: 2})), inv.Name)
		}
		refreshes = summaries.tallies.Load() - refreshes
		times, codes = summaries.times.Load()-times, summaries.timesCodes.Load()-codes
		Expect(times).To(BeNumerically("<=", refreshes), "reads of the changed codes' times: at most one per refresh")
		Expect(codes).To(BeNumerically(">=", n), "every changed code was read")
		Expect(times).To(BeNumerically("<", n), "the %d changed codes were read together, not one by one", n)
	})
})
