package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// The commands against a real cluster are in test/cluster (TestStaffTooling);
// here, what fails before any request.
func TestUsage(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(empty, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		nil,
		{"redemptions"},
		{"redemptions", "a", "b"},
		{"redemptions", "--bogus", "a"},
		{"revoke", "twitter-reg1", "--kubeconfig", empty},
		{"frobnicate", "x", "--kubeconfig", empty},
		{"redemptions", "x", "-o", "yaml", "--kubeconfig", empty},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want the usage", args, err)
		}
	}
}
