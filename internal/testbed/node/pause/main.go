// Command pause is the test-bed node's sandbox ("pause") image: it holds a
// pod's namespaces and does nothing until told to stop. No registry is
// reachable here, so the upstream image cannot be pulled.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
