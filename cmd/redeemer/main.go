// Command redeemer serves invitation redemptions: POST /invitations/{code}.
// Any number of replicas can run against one MongoDB. See docs/api.md and
// docs/operations.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "redeemer:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
