package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/velvetrope/velvetrope/internal/loadgen"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

// TestPrescaleFloorBeforeLaunch: an Invitation launching in five minutes
// with an expected peak of 6,000 req/s (2,000 per pod, the chart's
// default) raises its campaign's HPA floor to 3 before the launch, and the
// scheduler and kubelet run the third pod.
func TestPrescaleFloorBeforeLaunch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	launch := time.Now().Add(5 * time.Minute).UTC().Format(time.RFC3339)
	campaign(t, ctx, "launch-1", "launch", 1000, "launchAt: '"+launch+"'", "expectedPeakRPS: 6000")
	eventually(t, 90*time.Second, "the HPA floor at 3 and 3 Ready pods", func() (bool, string) {
		hpa, err := platform.Client.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "velvetrope-launch", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		d, err := platform.Client.AppsV1().Deployments("default").Get(ctx, "velvetrope-launch", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return hpa.Spec.MinReplicas != nil && *hpa.Spec.MinReplicas == 3 && d.Status.ReadyReplicas == 3,
			fmt.Sprintf("HPA min %v, Deployment %+v\n%s", hpa.Spec.MinReplicas, d.Status, platform.Describe(ctx, "default"))
	})
}

// TestCPUScaleOut: players opening a campaign's landing page keep its two
// pods (50m CPU requested each) above the HPA's 60 % target, as measured by
// metrics-server from the kubelet; the HPA adds pods, which the scheduler
// and kubelet run. The crowd stops once it has, at the latest after 150 s.
func TestCPUScaleOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	url := campaign(t, ctx, "cpu-1", "cpu", 1000)
	load, stop := context.WithCancel(ctx)
	done := make(chan loadgen.Result, 1)
	go func() {
		done <- loadgen.Run(load, loadgen.Config{Targets: []string{url}, Codes: []string{"cpu-1"}, Page: true,
			Requests: 60_000, Duration: 150 * time.Second, Rate: 400, Concurrency: 32, Timeout: 10 * time.Second,
			Email:        func(i int) string { return "" },
			ForwardedFor: func(i int) string { return fmt.Sprintf("198.19.%d.%d", i/250%250, i%250+1) }})
	}()
	var detail string
	deadline := time.Now().Add(150 * time.Second)
	for scaled := false; !scaled; {
		hpa, err := platform.Client.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "velvetrope-cpu", metav1.GetOptions{})
		if err == nil {
			scaled = hpa.Status.DesiredReplicas > 2
			detail = fmt.Sprintf("HPA status %+v", hpa.Status)
		}
		if !scaled && time.Now().After(deadline) {
			stop()
			<-done
			t.Fatalf("no scale-out within 150 s of load: %s\n%s", detail, platform.Describe(ctx, "default"))
		}
		time.Sleep(time.Second)
	}
	stop()
	res := <-done
	t.Logf("scaled out after %v of %d page views (%.0f/s): %s", res.Duration.Round(time.Second), len(res.Outcomes), res.RPS(), detail)
	eventually(t, 90*time.Second, "the added pods Ready", func() (bool, string) {
		d, err := platform.Client.AppsV1().Deployments("default").Get(ctx, "velvetrope-cpu", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return d.Status.ReadyReplicas > 2, fmt.Sprintf("%+v", d.Status)
	})
}

// TestOperatorRollingRestartLosesNothing restarts the operator's
// Deployment (two replicas, leader election) while staff keep editing an
// Invitation (every 300 ms) and apply a new one: the lease changes hands,
// and once the rollout is done the last edit and the new code are in
// MongoDB and in status, and the new code's fleet serves.
func TestOperatorRollingRestartLosesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	campaign(t, ctx, "handover-1", "handover", 100)
	leader := func() string {
		l, err := platform.Client.CoordinationV1().Leases(platform.Namespace).Get(ctx, "velvetrope-operator.velvetrope.io", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	before := leader()
	if out, err := platform.KubectlCmd("rollout", "restart", "deployment/velvetrope-operator", "-n", platform.Namespace).CombinedOutput(); err != nil {
		t.Fatalf("kubectl rollout restart: %v\n%s", err, out)
	}
	rolled := make(chan error, 1)
	go func() {
		out, err := platform.KubectlCmd("rollout", "status", "deployment/velvetrope-operator", "-n", platform.Namespace, "--timeout=120s").CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%v\n%s", err, out)
		}
		rolled <- err
	}()
	t.Cleanup(func() {
		platform.KubectlCmd("delete", "inv", "handover-2", "-n", "default", "--wait=true", "--timeout=60s").Run()
	})
	maxUses := 100
	for done := false; !done && maxUses > 10; {
		maxUses--
		apply(t, "handover-1", "handover", maxUses)
		if maxUses == 90 {
			apply(t, "handover-2", "handover", 70)
		}
		select {
		case err := <-rolled:
			if err != nil {
				t.Fatalf("the operator's rollout: %v\n%s", err, platform.Describe(ctx, platform.Namespace))
			}
			done = true
		case <-time.After(300 * time.Millisecond):
		}
	}
	if maxUses > 90 {
		apply(t, "handover-2", "handover", 70)
	}
	store := mongostore.New(mongo.Client.Database("velvetrope"))
	eventually(t, 60*time.Second, "the last edit and the new code in MongoDB and in status, under a new leader", func() (bool, string) {
		invs, err := store.Invitations(ctx)
		if err != nil {
			return false, err.Error()
		}
		got := map[string]int{}
		for _, inv := range invs {
			got[inv.Code] = inv.MaxUses
		}
		out, _ := platform.KubectlCmd("get", "inv", "handover-1", "handover-2", "-n", "default",
			"-o", "jsonpath={range .items[*]}{.metadata.name}={.status.observedGeneration}/{.metadata.generation}/{.status.remaining} {end}").CombinedOutput()
		var gen1 int
		fmt.Sscanf(string(out), "handover-1=%d/", &gen1)
		now := leader()
		return got["handover-1"] == maxUses && got["handover-2"] == 70 && now != "" && now != before &&
				strings.Contains(string(out), fmt.Sprintf("handover-1=%d/%d/%d", gen1, gen1, maxUses)) && gen1 > 1 &&
				strings.Contains(string(out), "handover-2=1/1/70"),
			fmt.Sprintf("last edit maxUses %d; MongoDB: %v; status: %s; leader %q, before %q", maxUses, got, out, now, before)
	})
	t.Logf("%d edits during the handover; leader %s -> %s", 100-maxUses, before, leader())
	// Redeemers load a new code within their poll interval (1 s) of its
	// write; until then it is 404 (and nothing is stored).
	url := serviceURL(t, ctx, "default", "handover")
	eventually(t, 10*time.Second, "the code applied during the handover served", func() (bool, string) {
		resp, err := http.Post(url+"/invitations/handover-2", "application/json", strings.NewReader(`{"email":"handover.player@example.com"}`))
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusCreated, resp.Status
	})
}
