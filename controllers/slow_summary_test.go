package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/velvetrope/velvetrope/api/v1alpha1"
)

// On the test bed, after a large crowd's mail, the usage board's
// aggregations took longer than a pass's 3 s store timeout, and every
// Invitation turned MongoDBUnavailable for an interval. A slow summary is no
// outage: statuses keep the last good figures, and take the new ones when
// the summary lands. (The outage spec shows a real one still counts.)
var _ = Describe("A slow usage summary", Serial, func() {
	It("does not make Invitations MongoDBUnavailable, and its figures land", func() {
		ns := newNamespace()
		a := create(newInvitation(ns, "slow-sum-a", 10, "slowsum"))
		b := create(newInvitation(ns, "slow-sum-b", 10, "slowsum"))
		serveFleet(ns, "slowsum")
		for _, inv := range []*v1alpha1.Invitation{a, b} {
			Eventually(status(inv)).Should(WithTransform(readyCondition, HaveField("Status", metav1.ConditionTrue)))
		}
		redeem("slow-sum-a", 0, "s1@example.com")
		Eventually(status(a)).Should(HaveField("Used", int32(1)))

		summaries.delay.Store(int64(2 * storeTimeout)) // longer than a pass may wait for MongoDB
		DeferCleanup(func() { summaries.delay.Store(0) })
		redeem("slow-sum-a", 1, "s2@example.com")
		for range 3 { // several summaries' worth
			for _, inv := range []*v1alpha1.Invitation{a, b} {
				Consistently(status(inv), storeTimeout, 200*time.Millisecond).Should(WithTransform(readyCondition, And(
					HaveField("Status", metav1.ConditionTrue), HaveField("Reason", ReasonServing))), "%s during a slow summary", inv.Name)
			}
		}
		Expect(reasons(ns)()).NotTo(ContainElement(ReasonMongoUnavailable))
		Eventually(status(a), 4*storeTimeout).Should(HaveField("Used", int32(2)), "the slow summary's figures")
	})
})
