package mongostore

import (
	"context"
	"time"
)

// UpdatesReadThenWritten reports which way s updates a redemption
// (readThenWrite), and SetUpdatesReadThenWritten forces one, so tests run both
// on the test bed.
func UpdatesReadThenWritten(ctx context.Context, s *Store) bool { return s.readThenWrite(ctx) }

func SetUpdatesReadThenWritten(s *Store, v bool) { updatesAreReadThenWritten.Store(s, v) }

var FerretDBv1 = ferretDBv1

// SetNow sets the clock s stamps its writes with.
func SetNow(s *Store, now func() time.Time) { s.now = now }
