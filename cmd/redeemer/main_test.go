package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

var (
	mongoServer *testbed.Mongo
	redeemerBin string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "redeemer-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if redeemerBin, err = testbed.Build("./cmd/redeemer", dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if mongoServer, err = testbed.StartMongo(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer mongoServer.Stop()
		return m.Run()
	}())
}
