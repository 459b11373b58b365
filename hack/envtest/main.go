// Command envtest builds the envtest control plane (etcd, kube-apiserver,
// kubectl) from the module proxy on first use and prints the directory that
// holds them, or with --kubectl the kubectl binary: `make envtest`, and the
// kubectl the Makefile's install/deploy targets use.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

func main() {
	kubectl := flag.Bool("kubectl", false, "print the kubectl binary instead of the directory")
	node := flag.Bool("node", false, "also build the real node's binaries (kubelet, kube-controller-manager, kube-scheduler, kube-proxy)")
	flag.Parse()
	if *node {
		if _, err := testbed.NodeBinaries(); err != nil {
			fmt.Fprintln(os.Stderr, "envtest:", err)
			os.Exit(1)
		}
	}
	dir, err := testbed.EnvtestAssets()
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest:", err)
		os.Exit(1)
	}
	if *kubectl {
		dir = filepath.Join(dir, "kubectl")
	}
	fmt.Println(dir)
}
