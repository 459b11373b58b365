package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/velvetrope/velvetrope/internal/staff"
	"github.com/velvetrope/velvetrope/internal/testbed"
)

// TestStaffTooling: staff list, export and revoke redemptions with the
// kubectl plugin, through the API server and the operator's aggregated API,
// with nothing but a kubeconfig; a user without the staff roles is refused,
// and each role grants only its verb.
func TestStaffTooling(t *testing.T) {
	ctx := context.Background()
	url := campaign(t, ctx, "staff-code", "staff", 10)
	players := []string{"Ann.Staff@example.com", "bob.staff@example.com", "cid.staff@example.com"}
	for _, p := range players {
		redeem(t, url, "staff-code", p)
	}
	plugin, err := testbed.Build("./cmd/kubectl-velvetrope", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	velvetrope := func(kubeconfig string, args ...string) (string, error) {
		out, err := exec.Command(plugin, append(args, "--kubeconfig", kubeconfig, "-n", "default")...).CombinedOutput()
		return string(out), err
	}
	eventually(t, 2*time.Minute, "the staff API available", func() (bool, string) {
		out, _ := platform.KubectlCmd("get", "apiservice", "v1alpha1."+staff.Group, "-o", "jsonpath={.status.conditions[?(@.type=='Available')].status} {.status.conditions[?(@.type=='Available')].message}").CombinedOutput()
		return strings.HasPrefix(string(out), "True"), string(out)
	})

	out, err := velvetrope(platform.Kubeconfig, "redemptions", "staff-code")
	if err != nil || strings.Count(out, "@example.com") != 3 || !strings.Contains(out, "Ann.Staff@example.com") || !strings.Contains(out, "EMAIL") {
		t.Fatalf("redemptions: %v\n%s", err, out)
	}
	out, err = velvetrope(platform.Kubeconfig, "redemptions", "staff-code", "-o", "csv")
	if err != nil || !strings.HasPrefix(out, "email,redeemed_at,language,mail\n") || strings.Count(out, "\n") != 4 {
		t.Fatalf("csv: %v\n%s", err, out)
	}

	// A user without the staff roles, then with the reader's only.
	intern := userKubeconfig(t, ctx, "intern")
	if out, err := velvetrope(intern, "redemptions", "staff-code"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("a user without the role listed redemptions: %v\n%s", err, out)
	}
	bind(t, ctx, "intern", "velvetrope-staff-redemptions-reader")
	eventually(t, 30*time.Second, "the reader role takes effect", func() (bool, string) {
		out, err := velvetrope(intern, "redemptions", "staff-code")
		return err == nil && strings.Count(out, "@example.com") == 3, out
	})
	if out, err := velvetrope(intern, "revoke", "staff-code", "--email", "bob.staff@example.com"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("a reader revoked: %v\n%s", err, out)
	}

	// Revoking, by any spelling of the person: the place is free again, and
	// an Event on the Invitation names a hash, never the email.
	out, err = velvetrope(platform.Kubeconfig, "revoke", "staff-code", "--email", "ANN.staff+beta@example.com")
	if err != nil || !strings.Contains(out, "Revoked") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	out, _ = velvetrope(platform.Kubeconfig, "redemptions", "staff-code", "-o", "csv")
	if strings.Contains(out, "Ann.Staff") || strings.Count(out, "\n") != 3 {
		t.Errorf("after the revocation:\n%s", out)
	}
	if out, err := velvetrope(platform.Kubeconfig, "revoke", "staff-code", "--email", "ann.staff@example.com"); err == nil || !strings.Contains(out, "no redemption") {
		t.Errorf("revoking twice: %v\n%s", err, out)
	}
	eventually(t, 30*time.Second, "an Event for the revocation", func() (bool, string) {
		events, err := platform.Client.EventsV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=staff-code"})
		if err != nil {
			return false, err.Error()
		}
		var notes []string
		for _, e := range events.Items {
			if e.Reason == "RedemptionRevoked" {
				if strings.Contains(strings.ToLower(e.Note), "ann.staff") {
					t.Fatalf("the Event names the email: %s", e.Note)
				}
				return strings.Contains(e.Note, staff.EmailHash("ann.staff@example.com")), e.Note
			}
			notes = append(notes, e.Reason)
		}
		return false, fmt.Sprint(notes)
	})
	// The place is free again: the redeemers forget the holder within
	// their usage interval, and the person redeems anew.
	eventually(t, 30*time.Second, "the revoked person redeems again", func() (bool, string) {
		resp, err := http.Post(url+"/invitations/staff-code", "application/json", strings.NewReader(`{"email":"ann.staff@example.com"}`))
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusCreated, resp.Status
	})
}

// userKubeconfig is a kubeconfig for a ServiceAccount of that name in
// default, with a short-lived token: a user with no role at all.
func userKubeconfig(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if _, err := platform.Client.CoreV1().ServiceAccounts("default").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		platform.Client.CoreV1().ServiceAccounts("default").Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	tok, err := platform.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(platform.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range cfg.AuthInfos { // the admin's cluster and CA, this user's token
		*user = clientcmdapi.AuthInfo{Token: tok.Status.Token}
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// bind grants a ServiceAccount of default a ClusterRole in default.
func bind(t *testing.T, ctx context.Context, sa, role string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: sa + "-" + role, Namespace: "default"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: "default"}}}
	if _, err := platform.Client.RbacV1().RoleBindings("default").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		platform.Client.RbacV1().RoleBindings("default").Delete(context.Background(), rb.Name, metav1.DeleteOptions{})
	})
}

func ptr[T any](v T) *T { return &v }
