package cluster

// This file's name sorts last on purpose: its test replaces the Helm
// release with a kustomize install, and go test runs a package's tests in
// file order.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

// TestKustomizeInstall installs the operator the other documented way:
// kubectl apply -k of an overlay on config/default whose only change is
// kustomize's images: — which reaches the fleets too, because the manager
// runs them on its own image. A code applied then serves from pods of that
// image.
func TestKustomizeInstall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := action.NewUninstall(platform.Helm()).Run(platform.Release); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	base, err := filepath.Rel(overlay, filepath.Join(root, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	name, tag, _ := strings.Cut(platform.Image, ":")
	kustomization := fmt.Sprintf("resources:\n- %s\nimages:\n- name: velvetrope\n  newName: %s\n  newTag: %q\n", base, name, tag)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := platform.KubectlCmd("apply", "-k", overlay).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -k: %v\n%s", err, out)
	}
	if out, err := platform.KubectlCmd("rollout", "status", "deployment/velvetrope-operator", "-n", "velvetrope-system", "--timeout=120s").CombinedOutput(); err != nil {
		t.Fatalf("the operator's rollout: %v\n%s\n%s", err, out, platform.Describe(ctx, "velvetrope-system"))
	}
	url := campaign(t, ctx, "kustomize-1", "kustomize", 10)
	d := waitFleetReady(t, ctx, "default", "kustomize", 2)
	if image := d.Spec.Template.Spec.Containers[0].Image; image != platform.Image {
		t.Errorf("the fleet runs %s, not the image kustomize set (%s)", image, platform.Image)
	}
	redeem(t, url, "kustomize-1", "kustomize.player@example.com")
}
