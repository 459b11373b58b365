package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// CodeTimes reads, in one query for all the codes given, the two times the
// operator's usage board cannot take from the summaries (Tallies gives a
// code's redemptions, MailByCode its emails by state): last, the latest
// redemption of each code in latest that has one, and oldestPending, when
// the oldest email still pending of each code in latest or pending was
// redeemed (codes without one are absent from either map).
//
// One query, not a sorted read per code: on the test bed every query but a
// read by _id scans and decodes the whole collection, and after a crowd over
// many codes those scans one after another held statuses back for minutes.
// Not an aggregation: the test bed's $group knows only $sum and $count (and
// feeds its documents to its first accumulator only), no $max or $min. So
// the server sends the redemption time and mail state of each matching
// document (the redemptions of codes in latest, the pending emails of codes
// in pending), at most MaxUsesLimit per code, and the extremes are taken
// here.
func (s *Store) CodeTimes(ctx context.Context, latest, pending []string) (last, oldestPending map[string]time.Time, err error) {
	last, oldestPending = map[string]time.Time{}, map[string]time.Time{}
	var or bson.A
	if len(latest) > 0 {
		or = append(or, bson.D{{Key: "code", Value: bson.D{{Key: "$in", Value: latest}}}, notClosed})
	}
	if len(pending) > 0 {
		or = append(or, bson.D{{Key: "code", Value: bson.D{{Key: "$in", Value: pending}}}, {Key: "mail.state", Value: string(invite.MailPending)}})
	}
	if len(or) == 0 {
		return last, oldestPending, nil
	}
	filter := bson.D{{Key: "$or", Value: or}}
	if len(or) == 1 {
		filter = or[0].(bson.D)
	}
	cur, err := s.redemptions.Find(ctx, filter, options.Find().SetProjection(bson.D{
		{Key: "_id", Value: 0}, {Key: "code", Value: 1}, {Key: "redeemedAt", Value: 1}, {Key: "mail.state", Value: 1},
	}))
	if err != nil {
		return nil, nil, Classify("reading redemption times", err)
	}
	defer cur.Close(ctx)
	inLatest := make(map[string]bool, len(latest))
	for _, c := range latest {
		inLatest[c] = true
	}
	for cur.Next(ctx) {
		var d struct {
			Code       string    `bson:"code"`
			RedeemedAt time.Time `bson:"redeemedAt"`
			Mail       struct {
				State string `bson:"state"`
			} `bson:"mail"`
		}
		if err := cur.Decode(&d); err != nil {
			return nil, nil, Classify("reading redemption times", err)
		}
		if inLatest[d.Code] {
			if t, ok := last[d.Code]; !ok || d.RedeemedAt.After(t) {
				last[d.Code] = d.RedeemedAt
			}
		}
		if invite.MailState(d.Mail.State) == invite.MailPending {
			if t, ok := oldestPending[d.Code]; !ok || d.RedeemedAt.Before(t) {
				oldestPending[d.Code] = d.RedeemedAt
			}
		}
	}
	if err := cur.Err(); err != nil {
		return nil, nil, Classify("reading redemption times", err)
	}
	return last, oldestPending, nil
}
