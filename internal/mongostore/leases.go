package mongostore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// leaseDoc says that holder (one redeemer process) started filling block
// of code at At. See Store.Lease.
type leaseDoc struct {
	ID     string    `bson:"_id"` // "<code>#<block>"
	Code   string    `bson:"code"`
	Block  int       `bson:"block"`
	Holder string    `bson:"holder"`
	At     time.Time `bson:"at"`
}

// Lease asks for blocks of code's slots on behalf of holder, and reports
// which it got: a block nobody leased, or whose lease is older than ttl (its
// holder stopped filling it, or died).
//
// A lease is a hint that keeps replicas out of each other's way, not a
// lock: the unique keys of redemptions decide who takes a slot, so two
// replicas that both think they hold a block only collide, as they would
// without leases. That is why taking over a stale lease may be a plain
// replace, which is not atomic on the test bed. A new lease is an insert
// against the unique _id, so two replicas asking for a fresh block at once
// never both get it.
func (s *Store) Lease(ctx context.Context, code string, blocks []int, holder string, ttl time.Duration) ([]bool, error) {
	now := s.now().UTC()
	granted := make([]bool, len(blocks))
	docs := make([]any, len(blocks))
	for i, b := range blocks {
		docs[i] = leaseDoc{ID: code + "#" + strconv.Itoa(b), Code: code, Block: b, Holder: holder, At: now}
		granted[i] = true
	}
	_, err := s.slotLeases.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return granted, nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return nil, Classify("leasing slot blocks", err)
	}
	for _, we := range bwe.WriteErrors {
		if we.Code != duplicateKey || we.Index < 0 || we.Index >= len(docs) {
			return nil, Classify("leasing slot blocks", we)
		}
		// Held already: by _id, the one indexed read on every server.
		want := docs[we.Index].(leaseDoc)
		var cur leaseDoc
		if err := s.slotLeases.FindOne(ctx, bson.D{{Key: "_id", Value: want.ID}}).Decode(&cur); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return nil, Classify("reading a slot lease", err)
		}
		granted[we.Index] = cur.Holder == holder || now.Sub(cur.At) > ttl
		if granted[we.Index] && cur.Holder != holder {
			if _, err := s.slotLeases.ReplaceOne(ctx, bson.D{{Key: "_id", Value: want.ID}}, want, options.Replace().SetUpsert(true)); err != nil {
				return nil, Classify("taking over a stale slot lease", err)
			}
		}
	}
	return granted, nil
}
