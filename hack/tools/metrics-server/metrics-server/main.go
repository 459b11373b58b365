// Command metrics-server is the upstream Kubernetes metrics-server, built
// from the module proxy (no image registry is reachable here). The test
// node runs it as a process behind the API server's aggregation layer.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"
	"sigs.k8s.io/metrics-server/cmd/metrics-server/app"
)

func main() {
	os.Exit(cli.Run(app.NewMetricsServerCommand(genericapiserver.SetupSignalHandler())))
}
