package cluster

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

// TestSamplesRunAsPods applies config/samples as staff would: the operator
// makes each campaign's fleet, whose pods (the project's image, the
// operator's own Deployment) go Running and Ready; a redemption through the
// campaign's Service is stored, shown by kubectl and mailed.
func TestSamplesRunAsPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := platform.KubectlCmd("apply", "-n", "default", "-k", root+"/config/samples").CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		for _, c := range [][2]string{{"twitter-reg1", "twitter"}, {"telegram-test", "telegram"}, {"instagram-hello", "instagram"}} {
			deleteCampaign(t, c[0], c[1])
		}
	})
	for _, campaign := range []string{"twitter", "telegram", "instagram"} {
		waitFleetReady(t, ctx, "default", campaign, 2)
	}
	redeem(t, serviceURL(t, ctx, "default", "twitter"), "twitter-reg1", "node.player@example.com")
	eventually(t, 30*time.Second, "kubectl get inv shows the redemption", func() (bool, string) {
		out, _ := platform.KubectlCmd("get", "inv", "-n", "default").CombinedOutput()
		return regexp.MustCompile(`(?m)^twitter-reg1\s+twitter-reg1\s+1000\s+1\s+Active\s`).Match(out), string(out) + "\n" + conditions("twitter-reg1") + "\n" + platform.OperatorLogs()
	})
	eventually(t, 30*time.Second, "the mail reaches the SMTP server", func() (bool, string) {
		for _, m := range smtp.Messages() {
			if len(m.To) == 1 && m.To[0] == "node.player@example.com" {
				return true, ""
			}
		}
		return false, fmt.Sprint(len(smtp.Messages()), " messages")
	})
}

// waitFleetReady waits until the campaign's Deployment has ready pods and
// reports it, with the namespace's pods and events on failure.
func waitFleetReady(t *testing.T, ctx context.Context, ns, campaign string, ready int32) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	eventually(t, 3*time.Minute, "fleet "+campaign+" Ready", func() (bool, string) {
		var err error
		d, err = platform.Client.AppsV1().Deployments(ns).Get(ctx, "velvetrope-"+campaign, metav1.GetOptions{})
		if err != nil {
			return false, err.Error() + "\n" + platform.Describe(ctx, ns)
		}
		return d.Status.ReadyReplicas >= ready && d.Status.UpdatedReplicas == d.Status.Replicas, platform.Describe(ctx, ns)
	})
	return d
}

// serviceURL is the campaign Service's URL, once it answers.
func serviceURL(t *testing.T, ctx context.Context, ns, campaign string) string {
	t.Helper()
	url, err := platform.ServiceURL(ctx, ns, campaign)
	if err != nil {
		t.Fatalf("%v\n%s", err, platform.Describe(ctx, ns))
	}
	return url
}

// redeem posts one redemption and expects 201 Created.
func redeem(t *testing.T, url, code, email string) {
	t.Helper()
	resp, err := http.Post(url+"/invitations/"+code, "application/json", strings.NewReader(`{"email":"`+email+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("redeem %s through %s: %s", code, url, resp.Status)
	}
}

// eventually polls cond every 250ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v\n%s", what, timeout, detail)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// conditions is an Invitation's status conditions, for a failing test's
// message.
func conditions(name string) string {
	out, _ := platform.KubectlCmd("get", "inv", name, "-n", "default", "-o", "jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{\"\\n\"}{end}").CombinedOutput()
	return string(out)
}
