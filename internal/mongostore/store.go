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
	// SlotLeasesCollection holds which redeemer is filling which block of a
	// code's slots (Store.Lease): a hint that keeps replicas apart, never a
	// guarantee.
	SlotLeasesCollection = "slot_leases"
	// HoldersCollection maps a canonical email to the slot its holder took
	// (Store.RecordHolders): a hint for ExplainEmails, checked against the
	// slot before it is believed.
	HoldersCollection = "holders"
	// ReplicasCollection lists the live redeemers of each campaign and
	// where their peers reach them (Store.Announce): which replica writes a
	// person's claims is chosen among them.
	ReplicasCollection = "replicas"
	// MetaCollection holds one document per kind of change that replicas
	// poll for, so an idle poll reads one small document.
	MetaCollection = "meta"
)

// Store reads and writes invitations and redemptions.
type Store struct {
	invitations *mongo.Collection
	redemptions *mongo.Collection
	mailClaims  *mongo.Collection
	slotLeases  *mongo.Collection
	holders     *mongo.Collection
	replicas    *mongo.Collection
	meta        *mongo.Collection
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
		slotLeases:  db.Collection(SlotLeasesCollection, wc),
		holders:     db.Collection(HoldersCollection, wc),
		replicas:    db.Collection(ReplicasCollection),
		meta:        db.Collection(MetaCollection, majority),
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
// invitation" hold across all codes and the indexes reads use, and brings
// documents written by earlier versions up to date (backfillTallies).
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
			return Classify("creating index "+name, err)
		}
	}
	return s.backfillTallies(ctx)
}

// backfillTallies gives redemptions written before tallies existed their
// tally, so that revoking one of those people changes their code's sum like
// any other (invite.Tally). The value is a function of the document, so
// replicas doing this at once write the same thing and a plain update is
// enough even where updates are not atomic.
func (s *Store) backfillTallies(ctx context.Context) error {
	missing := bson.D{{Key: "tally", Value: bson.D{{Key: "$exists", Value: false}}}}
	for {
		cur, err := s.redemptions.Find(ctx, missing, options.Find().SetLimit(1000).
			SetProjection(bson.D{{Key: "nonce", Value: 1}, {Key: "closed", Value: 1}}))
		if err != nil {
			return Classify("finding redemptions without a tally", err)
		}
		var docs []redemptionDoc
		if err := cur.All(ctx, &docs); err != nil {
			return Classify("finding redemptions without a tally", err)
		}
		if len(docs) == 0 {
			return nil
		}
		for _, d := range docs {
			t := invite.TallyOf(d.ID, d.Nonce, d.Closed != 0)
			if _, err := s.redemptions.UpdateOne(ctx, bson.D{{Key: "_id", Value: d.ID}, missing[0]},
				bson.D{{Key: "$set", Value: bson.D{{Key: "tally", Value: t}}}}); err != nil {
				return Classify("backfilling a tally", err)
			}
		}
	}
}

// Ping checks that the primary answers.
func (s *Store) Ping(ctx context.Context) error {
	return Classify("ping", s.invitations.Database().Client().Ping(ctx, nil))
}

// Classify turns a driver error into what the caller can act on. A
// redemption is an insert checked by unique keys, so the only definite
// failures are a duplicate key (the callers look at the data before calling
// this) and a document the server refused to store; anything else (network
// errors, timeouts, a primary stepping down or shutting down, a write concern
// not satisfied in time) leaves the outcome unknown: an
// invite.UnavailableError, which clients hear as 503 and may retry. The
// server's error labels and codes, not its message text, decide the reason.
func Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	wrapped := fmt.Errorf("%s: %w", op, err)
	var se mongo.ServerError
	if errors.As(err, &se) && !mongo.IsTimeout(err) && !mongo.IsNetworkError(err) && !writeConcernFailed(err) && hasAnyCode(se, definiteCodes) {
		return wrapped
	}
	return &invite.UnavailableError{Reason: reason(err), Err: wrapped}
}

// definiteCodes are server errors that say the write did not happen and a
// retry would fail the same way: the request or the document is wrong.
var definiteCodes = []int{
	2,   // BadValue
	9,   // FailedToParse
	14,  // TypeMismatch
	121, // DocumentValidationFailure
}

// notPrimaryCodes are what a stepdown or a shutdown answers (the driver
// retries a retryable write once; when that fails too, they reach us).
var notPrimaryCodes = []int{
	91,    // ShutdownInProgress
	189,   // PrimarySteppedDown
	10107, // NotWritablePrimary
	11600, // InterruptedAtShutdown
	11602, // InterruptedDueToReplStateChange
	13435, // NotPrimaryNoSecondaryOk
	13436, // NotPrimaryOrSecondary
}

func reason(err error) string {
	var se mongo.ServerError
	switch {
	case mongo.IsTimeout(err) || errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case mongo.IsNetworkError(err) || errors.Is(err, mongo.ErrClientDisconnected) ||
		errors.As(err, &topology.ServerSelectionError{}):
		return "network"
	case writeConcernFailed(err):
		return "write-concern"
	case errors.As(err, &se) && (se.HasErrorLabel("RetryableWriteError") || hasAnyCode(se, notPrimaryCodes)):
		return "not-primary"
	}
	return "other"
}

// writeConcernFailed: the write may be applied but not durable, whatever
// code the write-concern error carries.
func writeConcernFailed(err error) bool {
	var bwe mongo.BulkWriteException
	var we mongo.WriteException
	return errors.As(err, &bwe) && bwe.WriteConcernError != nil || errors.As(err, &we) && we.WriteConcernError != nil
}

func hasAnyCode(se mongo.ServerError, codes []int) bool {
	for _, c := range codes {
		if se.HasErrorCode(c) {
			return true
		}
	}
	return false
}
