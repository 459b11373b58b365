// Command kube-apiserver is the upstream kube-apiserver, built from the module
// proxy for the envtest control plane (no download site is reachable here).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
