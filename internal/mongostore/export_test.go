package mongostore

import "context"

// UpdatesReadThenWritten reports which way s updates a redemption
// (readThenWrite), and SetUpdatesReadThenWritten forces one, so tests run both
// on the test bed.
func UpdatesReadThenWritten(ctx context.Context, s *Store) bool { return s.readThenWrite(ctx) }

func SetUpdatesReadThenWritten(s *Store, v bool) { updatesAreReadThenWritten.Store(s, v) }

var FerretDBv1 = ferretDBv1
