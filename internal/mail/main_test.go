package mail_test

import (
	"testing"

	"github.com/velvetrope/velvetrope/internal/testbed"
)

var mongoServer *testbed.Mongo

func TestMain(m *testing.M) { testbed.MainWithMongo(m, &mongoServer) }
