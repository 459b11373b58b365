package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/loadgen"
	"github.com/velvetrope/velvetrope/internal/mongostore"
	"github.com/velvetrope/velvetrope/internal/testbed/node"
)

// campaign applies an Invitation (code = name) in a campaign of its own,
// waits until its fleet serves, and returns the Service URL. When the test
// ends it deletes the Invitation and checks that Kubernetes removes the
// campaign's fleet (Deployment, Service, HPA, PDB) with it.
// extra spec fields are added as YAML ("paused: true").
func campaign(t *testing.T, ctx context.Context, code, name string, maxUses int, extra ...string) string {
	t.Helper()
	apply(t, code, name, maxUses, extra...)
	t.Cleanup(func() { deleteCampaign(t, code, name) })
	waitFleetReady(t, ctx, "default", name, 2)
	return serviceURL(t, ctx, "default", name)
}

// apply applies the Invitation code in campaign name with kubectl.
func apply(t *testing.T, code, name string, maxUses int, extra ...string) {
	t.Helper()
	spec := fmt.Sprintf("maxUses: %d, campaign: %s", maxUses, name)
	for _, e := range extra {
		spec += ", " + e
	}
	yaml := fmt.Sprintf("apiVersion: velvetrope.io/v1alpha1\nkind: Invitation\nmetadata: {name: %s, namespace: default}\nspec: {%s}\n", code, spec)
	cmd := platform.KubectlCmd("apply", "-f", "-")
	cmd.Stdin = strings.NewReader(yaml)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}

func deleteCampaign(t *testing.T, code, name string) {
	if out, err := platform.KubectlCmd("delete", "inv", code, "-n", "default", "--wait=true", "--timeout=60s").CombinedOutput(); err != nil {
		t.Errorf("kubectl delete inv %s: %v\n%s", code, err, out)
		return
	}
	ctx := context.Background()
	fleet := "velvetrope-" + name
	eventually(t, 60*time.Second, "the fleet of the deleted campaign "+name+" removed", func() (bool, string) {
		var left []string
		if _, err := platform.Client.AppsV1().Deployments("default").Get(ctx, fleet, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "Deployment")
		}
		if _, err := platform.Client.CoreV1().Services("default").Get(ctx, fleet, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "Service")
		}
		if _, err := platform.Client.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, fleet, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "HPA")
		}
		if _, err := platform.Client.PolicyV1().PodDisruptionBudgets("default").Get(ctx, fleet, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "PDB")
		}
		return len(left) == 0, "left: " + strings.Join(left, ", ") + "\n" + garbageCollectorLog()
	})
}

// storm sends a bounded crowd to code through url while during runs: rate
// requests a second (open loop), each from a player of its own (a distinct
// X-Forwarded-For, the host being the trusted proxy as an ingress
// controller would be), at most 120 s and 48,000 requests. It returns what
// the crowd saw once during has returned and every answer is in.
func storm(t *testing.T, url, code string, rate float64, during func()) loadgen.Result {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan loadgen.Result, 1)
	go func() {
		done <- loadgen.Run(ctx, loadgen.Config{
			Targets: []string{url}, Codes: []string{code}, Requests: 48_000, Duration: 120 * time.Second,
			Rate: rate, Concurrency: 64, Timeout: 10 * time.Second,
			Email:        func(i int) string { return fmt.Sprintf("%s.player%d@example.com", code, i) },
			ForwardedFor: func(i int) string { return fmt.Sprintf("198.18.%d.%d", i/250%250, i%250+1) },
		})
	}()
	during()
	stop()
	return <-done
}

// audit checks the crowd against what MongoDB holds (internal/loadgen.Audit).
func audit(t *testing.T, code string, res loadgen.Result) {
	t.Helper()
	store := mongostore.New(mongo.Client.Database("velvetrope"))
	violations, err := loadgen.Audit(context.Background(), store, []string{code}, res, invite.DefaultFolding, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		t.Error("audit:", v)
	}
	t.Logf("%s: %d requests in %v, %s", code, len(res.Outcomes), res.Duration.Round(time.Millisecond), res.StatusSummary())
}

func failed(res loadgen.Result) int {
	n := res.Statuses[0]
	for status, count := range res.Statuses {
		if status >= 500 {
			n += count
		}
	}
	return n
}

// TestRollingUpdateUnderStorm upgrades the release to a new image while a
// crowd redeems through a campaign's Service: the operator rolls the fleet
// onto it (maxUnavailable 0, readiness-gated, draining on SIGTERM) and no
// request fails; the audit is clean.
func TestRollingUpdateUnderStorm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	url := campaign(t, ctx, "rollout-1", "rollout", 1000)
	ref, err := platform.BuildImage("2")
	if err != nil {
		t.Fatal(err)
	}
	// 50 players a second: the code's 1000 places last through the rollout.
	upgraded := time.Now()
	res := storm(t, url, "rollout-1", 50, func() {
		time.Sleep(2 * time.Second)
		upgraded = time.Now()
		if err := platform.Upgrade(ctx, map[string]any{"image": map[string]any{"tag": "2"}}); err != nil {
			t.Errorf("helm upgrade: %v", err)
			return
		}
		eventually(t, 80*time.Second, "the fleet rolled onto "+ref, func() (bool, string) {
			d := waitFleetReady(t, ctx, "default", "rollout", 2)
			image := d.Spec.Template.Spec.Containers[0].Image
			return image == ref && d.Status.UpdatedReplicas == d.Status.Replicas && d.Status.Replicas == d.Status.ReadyReplicas &&
				d.Status.ObservedGeneration == d.Generation, fmt.Sprintf("image %s, status %+v", image, d.Status)
		})
	})
	audit(t, "rollout-1", res)
	if n := failed(res); n > 0 {
		t.Errorf("%d requests failed during the rolling update (%s)", n, res.StatusSummary())
	}
	if rolled := time.Since(upgraded); res.LastCreated["rollout-1"] < res.Duration-rolled {
		t.Errorf("the last redemption came back %v into the crowd, before the upgrade began %v in: the rollout saw no redemptions", res.LastCreated["rollout-1"], res.Duration-rolled)
	}
}

// TestFleetPodKilledMidStorm kills a fleet pod's container through the
// runtime (SIGKILL, as the OOM killer would) while a crowd redeems: the
// kubelet restarts it, and the audit is clean: nothing acknowledged lost,
// nothing over maxUses, no person twice.
func TestFleetPodKilledMidStorm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	url := campaign(t, ctx, "crash-1", "crash", 1000)
	var victim corev1.Pod
	var killed time.Duration
	start := time.Now()
	// 200 players a second: the kill lands with most places still free.
	res := storm(t, url, "crash-1", 200, func() {
		time.Sleep(1500 * time.Millisecond)
		killed = time.Since(start)
		pods, err := platform.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "velvetrope.io/campaign=crash"})
		if err != nil || len(pods.Items) == 0 {
			t.Errorf("no pods of the crash fleet: %v", err)
			return
		}
		victim = pods.Items[0]
		id := strings.TrimPrefix(victim.Status.ContainerStatuses[0].ContainerID, "containerd://")
		if out, err := platform.RuntimeCmd("tasks", "kill", "--signal", "SIGKILL", id).CombinedOutput(); err != nil {
			t.Errorf("killing container %s: %v\n%s", id, err, out)
		}
		time.Sleep(5 * time.Second)
	})
	audit(t, "crash-1", res)
	if res.LastCreated["crash-1"] < killed {
		t.Errorf("no redemption came back after the kill (%v in; last 201 at %v): the kill was not mid-storm", killed, res.LastCreated["crash-1"])
	}
	eventually(t, 60*time.Second, "the kubelet restarted the killed container", func() (bool, string) {
		p, err := platform.Client.CoreV1().Pods("default").Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := p.Status.ContainerStatuses[0]
		return s.RestartCount >= 1 && s.Ready, fmt.Sprintf("%+v", s)
	})
}

// TestDrainRespectsPDBs drains the node of the fleets' pods: the eviction
// API evicts one pod per fleet and refuses the next (the replacement cannot
// be scheduled on the cordoned node), so kubectl drain times out while
// every fleet keeps a Ready pod. Uncordoned, the fleets recover.
func TestDrainRespectsPDBs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	url := campaign(t, ctx, "drain-1", "drain", 100)
	defer func() {
		if out, err := platform.KubectlCmd("uncordon", node.Name).CombinedOutput(); err != nil {
			t.Errorf("uncordon: %v\n%s", err, out)
		}
		waitFleetReady(t, ctx, "default", "drain", 2)
	}()
	out, err := platform.KubectlCmd("drain", node.Name, "--pod-selector", "app.kubernetes.io/name=velvetrope-redeemer",
		"--delete-emptydir-data", "--ignore-daemonsets", "--timeout", "25s").CombinedOutput()
	if err == nil {
		t.Fatalf("kubectl drain evicted every fleet pod despite the PDBs:\n%s", out)
	}
	if !strings.Contains(string(out), "disruption budget") {
		t.Errorf("kubectl drain did not hit a disruption budget:\n%s", out)
	}
	d, err := platform.Client.AppsV1().Deployments("default").Get(ctx, "velvetrope-drain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.ReadyReplicas < 1 {
		t.Errorf("the drain left the fleet with no Ready pod: %+v", d.Status)
	}
	res := loadgen.Run(ctx, loadgen.Config{Targets: []string{url}, Codes: []string{"drain-1"}, Requests: 50, Concurrency: 4,
		Email: func(i int) string { return fmt.Sprintf("drain.player%d@example.com", i) }})
	if res.Statuses[201] != 50 {
		t.Errorf("during the drain the fleet did not serve: %s", res.StatusSummary())
	}
}

// garbageCollectorLog is what kube-controller-manager's garbage collector
// said lately, for a failing test's message.
func garbageCollectorLog() string {
	b, _ := os.ReadFile(filepath.Join(node.RunDir, "logs", "kube-controller-manager.log"))
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "garbage") || strings.Contains(l, "graph_builder") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
