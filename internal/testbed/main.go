package testbed

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/velvetrope/velvetrope/internal/invite"
	"github.com/velvetrope/velvetrope/internal/mongostore"
)

// MainWithMongo is a test package's TestMain: it starts one MongoDB server
// for the package, stores it in *server, runs the tests and stops it.
func MainWithMongo(m *testing.M, server **Mongo) {
	os.Exit(func() int {
		s, err := StartMongo()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer s.Stop()
		*server = s
		return m.Run()
	}())
}

// Store returns a store on a database of t's own, with indexes and the given
// invitations in place.
func (m *Mongo) Store(t testing.TB, invs ...invite.Invitation) *mongostore.Store {
	t.Helper()
	st := mongostore.New(m.Database(t))
	ctx := context.Background()
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	for _, inv := range invs {
		if err := st.PutInvitation(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	return st
}
