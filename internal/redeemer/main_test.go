package redeemer_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

var mongoServer *testbed.Mongo

func TestMain(m *testing.M) {
	var err error
	mongoServer, err = testbed.StartMongo()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	mongoServer.Stop()
	os.Exit(code)
}
