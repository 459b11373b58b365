package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNodeRunsPodsAndLeavesNothing starts the node, runs a pod on it, and
// checks that Stop leaves no process, mount, bridge, iptables rule, cgroup
// or directory behind.
func TestNodeRunsPodsAndLeavesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := Start(ctx, Options{Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			n.Stop()
		}
	}()
	runPause(t, n)

	n.Stop()
	stopped = true
	assertNothingLeft(t)
}

// TestNodeAfterKilledRun kills a process that runs a node with a pod (as a
// CI timeout or kill -9 would), then starts a node again: the new start
// cleans what the killed one left, and its Stop leaves nothing.
func TestNodeAfterKilledRun(t *testing.T) {
	if os.Getenv("VELVETROPE_NODE_HELPER") == "1" {
		n, err := Start(context.Background(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		runPause(t, n)
		fmt.Println("RUNNING")
		time.Sleep(5 * time.Minute) // killed long before
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestNodeAfterKilledRun$")
	cmd.Env = append(os.Environ(), "VELVETROPE_NODE_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	if line != "RUNNING\n" {
		t.Fatalf("the helper did not run a pod: %q", line)
	}
	if _, err := os.Stat(RunDir); err != nil {
		t.Fatal("the killed run left nothing to clean, so this test tests nothing")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	n, err := Start(ctx, Options{Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	runPause(t, n)
	n.Stop()
	assertNothingLeft(t)
}

func TestSplitRule(t *testing.T) {
	got := splitRule(`KUBE-FIREWALL ! -s 127.0.0.0/8 -m comment --comment "block incoming \"x\" connections" -j DROP`)
	want := []string{"KUBE-FIREWALL", "!", "-s", "127.0.0.0/8", "-m", "comment", "--comment", `block incoming "x" connections`, "-j", "DROP"}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
		t.Fatalf("splitRule = %q, want %q", got, want)
	}
}

func assertNothingLeft(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(RunDir); err == nil {
		t.Errorf("%s remains", RunDir)
	}
	if bridgeExists() {
		t.Errorf("bridge %s remains", Bridge)
	}
	if n := killByCommandLine(RunDir); n > 0 {
		t.Errorf("%d processes naming %s remained", n, RunDir)
	}
	if dirs := cgroupDirs("kubepods"); len(dirs) > 0 {
		t.Errorf("cgroups remain: %v", dirs)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), RunDir) {
		t.Errorf("mounts remain under %s", RunDir)
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil && strings.Contains(string(out), "KUBE-") {
		t.Errorf("kube-proxy's iptables rules remain")
	}
}

// runPause runs a pod of the pause image and waits until it is Running.
func runPause(t *testing.T, n *Node) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pause", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "pause", Image: pauseImage.Ref, ImagePullPolicy: corev1.PullNever,
		}}},
	}
	if _, err := n.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 60*time.Second, "pod Running", func() (bool, error) {
		p, err := n.Client.CoreV1().Pods("default").Get(ctx, "pause", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", nil
	}); err != nil {
		p, _ := n.Client.CoreV1().Pods("default").Get(ctx, "pause", metav1.GetOptions{})
		t.Fatalf("%v\npod: %+v\nkubelet:\n%s\ncontainerd:\n%s", err, p.Status, Logs("kubelet", 3000), Logs("containerd", 3000))
	}

}
