package mongostore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// mailDoc is the outbox part of a redemption document.
type mailDoc struct {
	State     string    `bson:"state"`
	Attempts  int       `bson:"attempts"`
	NextAt    time.Time `bson:"nextAt"`
	LastError string    `bson:"lastError,omitempty"`
	SentAt    time.Time `bson:"sentAt,omitempty"`
	// History has one entry per attempt, in order.
	History []attemptDoc `bson:"history,omitempty"`
}

type attemptDoc struct {
	Number int       `bson:"n"`
	State  string    `bson:"state"`
	Error  string    `bson:"error,omitempty"`
	At     time.Time `bson:"at"`
}

// claimDoc gives one dispatcher attempt n of one redemption's email.
type claimDoc struct {
	ID         string    `bson:"_id"` // <redemption nonce>#<attempt>
	By         string    `bson:"by"`
	LeaseUntil time.Time `bson:"leaseUntil"`
}

// DueMail returns up to limit redemptions whose email is pending and due at
// now, oldest first.
func (s *Store) DueMail(ctx context.Context, now time.Time, limit int) ([]invite.Outbound, error) {
	cur, err := s.redemptions.Find(ctx,
		bson.D{{Key: "mail.state", Value: string(invite.MailPending)}, {Key: "mail.nextAt", Value: bson.D{{Key: "$lte", Value: now.UTC()}}}},
		options.Find().SetSort(bson.D{{Key: "mail.nextAt", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, Classify("listing due mail", err)
	}
	var docs []redemptionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, Classify("listing due mail", err)
	}
	out := make([]invite.Outbound, len(docs))
	for i, d := range docs {
		out[i] = invite.Outbound{Redemption: d.redemption(), Lang: d.Lang, Attempts: d.Mail.Attempts}
	}
	return out, nil
}

// ClaimAttempt tries to become the one dispatcher making attempt n for the
// redemption written with nonce: an insert against a unique _id, the only
// atomic compare-and-set on every server we run on. It returns false with
// the existing claim's lease when another dispatcher holds attempt n.
//
// Keyed by the redemption (its nonce), not its slot: a revoked slot is taken
// again by someone else, who must not inherit the attempts made for the
// person before.
func (s *Store) ClaimAttempt(ctx context.Context, nonce string, n int, by string, leaseUntil time.Time) (bool, time.Time, error) {
	id := nonce + "#" + strconv.Itoa(n)
	_, err := s.mailClaims.InsertOne(ctx, claimDoc{ID: id, By: by, LeaseUntil: leaseUntil.UTC()})
	if err == nil {
		return true, leaseUntil, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return false, time.Time{}, Classify("claiming a mail attempt", err)
	}
	var existing claimDoc
	if err := s.mailClaims.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&existing); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return false, time.Time{}, nil // vanished: try again on the next round
		}
		return false, time.Time{}, Classify("reading a mail claim", err)
	}
	return false, existing.LeaseUntil, nil
}

// RecordAttempt stores the outcome of attempt a for redemption r. Only the
// holder of attempt a's claim calls it, while its lease holds, so there is a
// single writer and a plain update is enough even where updates are not
// atomic. The update names r's nonce: if r was revoked and its slot taken by
// someone else meanwhile, nothing is recorded on their document (atomically
// on MongoDB; on the test bed, checked on a read by _id: updateRedemption).
func (s *Store) RecordAttempt(ctx context.Context, r invite.Redemption, a invite.Attempt) error {
	set := bson.D{
		{Key: "mail.state", Value: string(a.State)},
		{Key: "mail.attempts", Value: a.Number},
		{Key: "mail.nextAt", Value: a.NextAt.UTC()},
		{Key: "mail.lastError", Value: a.Error},
	}
	if a.State == invite.MailSent {
		set = append(set, bson.E{Key: "mail.sentAt", Value: a.At.UTC()})
	}
	_, err := s.updateRedemption(ctx, invite.SlotID(r.Code, r.Slot), r.Nonce, bson.D{
		{Key: "$set", Value: set},
		{Key: "$push", Value: bson.D{{Key: "mail.history", Value: attemptDoc{Number: a.Number, State: string(a.State), Error: a.Error, At: a.At.UTC()}}}},
	})
	return Classify("recording a mail attempt", err)
}

// MailCounts counts a code's emails by state.
func (s *Store) MailCounts(ctx context.Context, code string) (invite.MailCounts, error) {
	var c invite.MailCounts
	for state, dst := range map[invite.MailState]*int{invite.MailPending: &c.Pending, invite.MailSent: &c.Sent, invite.MailFailed: &c.Failed} {
		n, err := s.redemptions.CountDocuments(ctx, bson.D{{Key: "code", Value: code}, {Key: "mail.state", Value: string(state)}})
		if err != nil {
			return c, Classify("counting mail of "+code, err)
		}
		*dst = int(n)
	}
	if c.Pending > 0 {
		var d redemptionDoc
		err := s.redemptions.FindOne(ctx, bson.D{{Key: "code", Value: code}, {Key: "mail.state", Value: string(invite.MailPending)}},
			options.FindOne().SetSort(bson.D{{Key: "redeemedAt", Value: 1}}).SetProjection(bson.D{{Key: "redeemedAt", Value: 1}})).Decode(&d)
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return c, Classify("reading the oldest pending mail of "+code, err)
		}
		c.OldestPending = d.RedeemedAt
	}
	return c, nil
}

// OldestPendingMail returns when the oldest pending email became due (zero
// when none is pending), for the oldest-pending-age metric.
func (s *Store) OldestPendingMail(ctx context.Context) (time.Time, error) {
	var d redemptionDoc
	err := s.redemptions.FindOne(ctx, bson.D{{Key: "mail.state", Value: string(invite.MailPending)}},
		options.FindOne().SetSort(bson.D{{Key: "redeemedAt", Value: 1}}).SetProjection(bson.D{{Key: "redeemedAt", Value: 1}})).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, Classify("reading the oldest pending mail", err)
	}
	return d.RedeemedAt, nil
}

// MailByCode counts every code's emails by state, in one aggregation (a
// single accumulator: the test bed feeds a $group's documents to its first
// accumulator only). OldestPending is left zero: see MailCounts.
func (s *Store) MailByCode(ctx context.Context) (map[string]invite.MailCounts, error) {
	cur, err := s.redemptions.Aggregate(ctx, bson.A{
		bson.D{{Key: "$group", Value: bson.D{
			{Key: "_id", Value: bson.D{{Key: "code", Value: "$code"}, {Key: "state", Value: "$mail.state"}}},
			{Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}},
		}}},
	})
	if err != nil {
		return nil, Classify("counting mail by code", err)
	}
	var rows []struct {
		ID struct {
			Code  string `bson:"code"`
			State string `bson:"state"`
		} `bson:"_id"`
		N int `bson:"n"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, Classify("counting mail by code", err)
	}
	out := map[string]invite.MailCounts{}
	for _, r := range rows {
		c := out[r.ID.Code]
		switch invite.MailState(r.ID.State) {
		case invite.MailPending:
			c.Pending += r.N
		case invite.MailSent:
			c.Sent += r.N
		case invite.MailFailed:
			c.Failed += r.N
		default:
			continue // closed slots have no mail
		}
		out[r.ID.Code] = c
	}
	return out, nil
}
