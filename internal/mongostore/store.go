// Package mongostore is the MongoDB adapter: collections, indexes, the
// slot-claim insert and the reads the redeemers and the operator need.
//
// Every compare-and-set here is an insert checked by unique keys, because that
// is the only write that is atomic on MongoDB and on the FerretDB test bed
// alike (FerretDB has no transactions and its findAndModify/update are not
// atomic). It must never import net/http or Kubernetes packages.
package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// Collection names: the data contract with the operator (docs/architecture.md).
const (
	InvitationsCollection = "invitations"
	RedemptionsCollection = "redemptions"
	MailClaimsCollection  = "mail_claims"
)

// Store reads and writes invitations and redemptions.
type Store struct {
	invitations *mongo.Collection
	redemptions *mongo.Collection
	mailClaims  *mongo.Collection
	now         func() time.Time
}

// New returns a Store on db. Writes wait for a majority of the replica set, so
// an acknowledged redemption survives the loss of the primary; reads of
// redemptions see only majority-committed documents, so "you already hold a
// slot" is never said on the strength of a write that could still roll back.
func New(db *mongo.Database) *Store {
	wc := options.Collection().SetWriteConcern(writeconcern.Majority())
	majority := options.Collection().SetWriteConcern(writeconcern.Majority()).SetReadConcern(readconcern.Majority())
	return &Store{
		invitations: db.Collection(InvitationsCollection, wc),
		redemptions: db.Collection(RedemptionsCollection, majority),
		mailClaims:  db.Collection(MailClaimsCollection, majority),
		now:         time.Now,
	}
}

// Connect opens a client for uri. Server selection fails within a few seconds
// so that a lost database turns into a fast 503, not a hung request; retryable
// writes stay on (the driver's default), which is safe because a retried
// insert that finds its own document is recognised by its nonce.
func Connect(uri, appName string) (*mongo.Client, error) {
	opts := options.Client().ApplyURI(uri).
		SetAppName(appName).
		SetServerSelectionTimeout(2 * time.Second).
		SetConnectTimeout(2 * time.Second)
	return mongo.Connect(opts)
}

// EnsureIndexes creates the unique index that makes "one person, one
// invitation" hold across all codes, and the index usage counts read.
//
// One index per command: FerretDB v1.24 panics when a single createIndexes
// names two indexes that already exist (it deletes from the filtered list by
// the original position), which every replica's restart would do.
func (s *Store) EnsureIndexes(ctx context.Context) error {
	for name, idx := range map[string]mongo.IndexModel{
		"email_unique": {Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetName("email_unique").SetUnique(true)},
		"code":         {Keys: bson.D{{Key: "code", Value: 1}}, Options: options.Index().SetName("code")},
		"mail_due":     {Keys: bson.D{{Key: "mail.state", Value: 1}, {Key: "mail.nextAt", Value: 1}}, Options: options.Index().SetName("mail_due")},
	} {
		if _, err := s.redemptions.Indexes().CreateOne(ctx, idx); err != nil {
			return classify("creating index "+name, err)
		}
	}
	return nil
}

// Ping checks that the primary answers.
func (s *Store) Ping(ctx context.Context) error {
	return classify("ping", s.invitations.Database().Client().Ping(ctx, nil))
}

// classify wraps err with invite.ErrUnavailable when the database could not be
// reached or did not answer in time: the outcome of the operation is unknown
// and the caller may retry. Other errors are bugs or misconfiguration.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) ||
		errors.Is(err, mongo.ErrClientDisconnected) ||
		errors.As(err, &topology.ServerSelectionError{}) {
		return fmt.Errorf("%s: %w: %w", op, invite.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
