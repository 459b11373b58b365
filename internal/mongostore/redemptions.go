package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// redemptionDoc is one document of the redemptions collection: one person
// holding one slot. Its _id is the slot ID, so the unique _id index caps a
// code at maxUses documents, and the unique email index caps a person at one.
type redemptionDoc struct {
	ID         string    `bson:"_id"`
	Code       string    `bson:"code"`
	Slot       int       `bson:"slot"`
	Email      string    `bson:"email"`
	RawEmail   string    `bson:"rawEmail"`
	Nonce      string    `bson:"nonce"`
	RedeemedAt time.Time `bson:"redeemedAt"`
	Lang       string    `bson:"lang,omitempty"`
	// Tally: see invite.Tally. Summed per code by Tallies.
	Tally int64 `bson:"tally"`
	// Closed is 1 on a placeholder (closedDoc) read through this type.
	Closed int `bson:"closed,omitempty"`
	// Mail makes the redemption its own outbox entry: written by the same
	// insert that takes the slot, so no acknowledged redemption can lack
	// one (see mail.go).
	Mail mailDoc `bson:"mail"`
}

// notClosed selects redemptions, leaving out placeholders.
var notClosed = bson.E{Key: "closed", Value: bson.D{{Key: "$exists", Value: false}}}

func (d redemptionDoc) redemption() invite.Redemption {
	return invite.Redemption{
		Code:       d.Code,
		Slot:       d.Slot,
		Email:      invite.Email{Canonical: d.Email, Raw: d.RawEmail},
		Nonce:      d.Nonce,
		RedeemedAt: d.RedeemedAt,
		Lang:       d.Lang,
		Mail:       invite.MailState(d.Mail.State),
	}
}

const duplicateKey = 11000

// Claim tries to take every claimed slot with ONE unordered insert, the only
// atomic compare-and-set we have, batched because one round trip for fifty
// claims costs little more than one for one. Each claim gets its own answer;
// duplicates are explained by reading the documents that hold the keys (the
// server's message does not name the index on every server).
func (s *Store) Claim(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	results := make([]invite.ClaimResult, len(claims))
	docs := make([]any, len(claims))
	for i, c := range claims {
		docs[i] = redemptionDoc{
			ID:         invite.SlotID(c.Code, c.Slot),
			Code:       c.Code,
			Slot:       c.Slot,
			Email:      c.Email.Canonical,
			RawEmail:   c.Email.Raw,
			Nonce:      c.Nonce,
			RedeemedAt: c.RedeemedAt.UTC(),
			Lang:       c.Lang,
			Tally:      invite.TallyOf(invite.SlotID(c.Code, c.Slot), c.Nonce, false),
			Mail:       mailDoc{State: string(invite.MailPending), NextAt: c.RedeemedAt.UTC()},
		}
		results[i] = invite.ClaimResult{Status: invite.ClaimInserted, Tally: docs[i].(redemptionDoc).Tally}
	}

	_, err := s.redemptions.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	if err == nil {
		return results
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) {
		return failAll(results, Classify("claiming slots", err))
	}
	if bwe.WriteConcernError != nil {
		// The batch may or may not be durable: nobody gets an answer that
		// could be wrong. Clients retry (503) and find their document.
		return failAll(results, Classify("claiming slots", err))
	}
	var dups []int
	for _, we := range bwe.WriteErrors {
		if we.Index < 0 || we.Index >= len(results) {
			continue
		}
		if we.Code == duplicateKey {
			dups = append(dups, we.Index)
			continue
		}
		results[we.Index] = invite.ClaimResult{Status: invite.ClaimFailed, Err: Classify("claiming a slot", we)}
	}
	if len(dups) > 0 {
		if err := s.explainDuplicates(ctx, claims, dups, results); err != nil {
			for _, i := range dups {
				results[i] = invite.ClaimResult{Status: invite.ClaimFailed, Err: err}
			}
		}
	}
	return results
}

// explainDuplicates reads, in one query for the whole batch, who holds the
// slots and who holds the emails of the claims at indexes dups. One read,
// not two: on the test bed every read scans the collection.
func (s *Store) explainDuplicates(ctx context.Context, claims []invite.Redemption, dups []int, results []invite.ClaimResult) error {
	ids := make([]string, len(dups))
	emails := make([]string, len(dups))
	for i, idx := range dups {
		ids[i] = invite.SlotID(claims[idx].Code, claims[idx].Slot)
		emails[i] = claims[idx].Email.Canonical
	}
	cur, err := s.redemptions.Find(ctx, bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		bson.D{{Key: "email", Value: bson.D{{Key: "$in", Value: emails}}}},
	}}})
	if err != nil {
		return Classify("reading conflicting redemptions", err)
	}
	var docs []redemptionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return Classify("reading conflicting redemptions", err)
	}
	bySlot, byEmail := make(map[string]redemptionDoc, len(docs)), make(map[string]redemptionDoc, len(docs))
	for _, d := range docs {
		bySlot[d.ID] = d
		byEmail[d.Email] = d
	}
	for _, idx := range dups {
		c := claims[idx]
		slotHolder, slotTaken := bySlot[invite.SlotID(c.Code, c.Slot)]
		emailHolder, emailTaken := byEmail[c.Email.Canonical]
		switch {
		case slotTaken && slotHolder.Nonce == c.Nonce:
			results[idx] = invite.ClaimResult{Status: invite.ClaimInserted, Tally: slotHolder.Tally} // our own retried write
		case emailTaken:
			// The person holds a slot already; that decides, whether or
			// not the slot was taken too.
			results[idx] = invite.ClaimResult{Status: invite.ClaimEmailTaken, Holder: emailHolder.redemption(), Tally: emailHolder.Tally}
		case slotTaken && slotHolder.Closed != 0:
			results[idx] = invite.ClaimResult{Status: invite.ClaimSlotClosed, Tally: slotHolder.Tally}
		case slotTaken:
			results[idx] = invite.ClaimResult{Status: invite.ClaimSlotTaken, Holder: slotHolder.redemption(), Tally: slotHolder.Tally}
		default:
			// The conflict vanished before it could be explained (a
			// redemption was deleted meanwhile): try again.
			results[idx] = invite.ClaimResult{Status: invite.ClaimRetry}
		}
	}
	return nil
}

func failAll(results []invite.ClaimResult, err error) []invite.ClaimResult {
	for i := range results {
		results[i] = invite.ClaimResult{Status: invite.ClaimFailed, Err: err}
	}
	return results
}

// Redemptions returns the redemptions of code (at most its maxUses, plus any
// left over after maxUses was lowered).
func (s *Store) Redemptions(ctx context.Context, code string) ([]invite.Redemption, error) {
	docs, err := s.listByCode(ctx, code, bson.D{{Key: "code", Value: code}, notClosed}, nil)
	out := make([]invite.Redemption, len(docs))
	for i, d := range docs {
		out[i] = d.redemption()
	}
	return out, err
}

// Occupants returns what every slot of code holds, redemptions and closed
// slots alike, with only what a redeemer's slot view needs.
func (s *Store) Occupants(ctx context.Context, code string) ([]invite.Occupant, error) {
	docs, err := s.listByCode(ctx, code, bson.D{{Key: "code", Value: code}},
		options.Find().SetProjection(bson.D{{Key: "slot", Value: 1}, {Key: "email", Value: 1}, {Key: "closed", Value: 1}, {Key: "tally", Value: 1}}))
	out := make([]invite.Occupant, len(docs))
	for i, d := range docs {
		out[i] = invite.Occupant{Slot: d.Slot, Email: d.Email, Closed: d.Closed != 0, Tally: d.Tally}
		if out[i].Closed {
			out[i].Email = ""
		}
	}
	return out, err
}

func (s *Store) listByCode(ctx context.Context, code string, filter bson.D, opts *options.FindOptionsBuilder) ([]redemptionDoc, error) {
	var optList []options.Lister[options.FindOptions]
	if opts != nil {
		optList = append(optList, opts)
	}
	cur, err := s.redemptions.Find(ctx, filter, optList...)
	if err != nil {
		return nil, Classify("listing redemptions of "+code, err)
	}
	var docs []redemptionDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, Classify("listing redemptions of "+code, err)
	}
	return docs, nil
}

// Tallies sums every code's slot documents (see invite.Tally) in one query:
// how a redeemer learns, for all codes at once, whether its view of a code
// is complete, and how many people hold a code it has not loaded.
func (s *Store) Tallies(ctx context.Context) (map[string]invite.Tally, error) {
	cur, err := s.redemptions.Aggregate(ctx, bson.A{
		bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$code"}, {Key: "t", Value: bson.D{{Key: "$sum", Value: "$tally"}}}}}},
	})
	if err != nil {
		return nil, Classify("summing tallies", err)
	}
	var rows []struct {
		Code  string        `bson:"_id"`
		Tally bson.RawValue `bson:"t"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, Classify("summing tallies", err)
	}
	out := make(map[string]invite.Tally, len(rows))
	for _, r := range rows {
		t, ok := r.Tally.AsInt64OK() // int32 when small, int64 otherwise
		if !ok {
			return nil, fmt.Errorf("summing tallies: %s: not an integer: %v", r.Code, r.Tally)
		}
		out[r.Code] = invite.Tally(t)
	}
	return out, nil
}

// Used counts the redemptions of code.
func (s *Store) Used(ctx context.Context, code string) (int, error) {
	n, err := s.redemptions.CountDocuments(ctx, bson.D{{Key: "code", Value: code}, notClosed})
	return int(n), Classify("counting redemptions of "+code, err)
}

// Revoke deletes the redemption of a canonical email of code ("": of any
// code), freeing its slot and letting the person redeem again (staff
// revoking one person's place). Every redeemer forgets the holder within its
// usage interval (the code's tally changes). It returns the redemption
// revoked, or invite.ErrNotRedeemed.
//
// The delete names the document's nonce, so a person who was revoked and
// redeemed again meanwhile keeps their new place.
func (s *Store) Revoke(ctx context.Context, code, canonicalEmail string) (invite.Redemption, error) {
	filter := bson.D{{Key: "email", Value: canonicalEmail}, notClosed}
	if code != "" {
		filter = append(filter, bson.E{Key: "code", Value: code})
	}
	var d redemptionDoc
	err := s.redemptions.FindOne(ctx, filter).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return invite.Redemption{}, invite.ErrNotRedeemed
	}
	if err != nil {
		return invite.Redemption{}, Classify("reading a redemption to revoke", err)
	}
	res, err := s.redemptions.DeleteOne(ctx, bson.D{{Key: "_id", Value: d.ID}, {Key: "nonce", Value: d.Nonce}})
	if err != nil {
		return invite.Redemption{}, Classify("revoking a redemption", err)
	}
	if res.DeletedCount == 0 {
		return invite.Redemption{}, invite.ErrNotRedeemed
	}
	return d.redemption(), nil
}

// Usage reports how many redemptions code has and when the latest happened
// (zero when none): what the operator shows in the Invitation status.
func (s *Store) Usage(ctx context.Context, code string) (invite.Usage, error) {
	used, err := s.Used(ctx, code)
	if err != nil || used == 0 {
		return invite.Usage{Used: used}, err
	}
	var last redemptionDoc
	err = s.redemptions.FindOne(ctx, bson.D{{Key: "code", Value: code}},
		options.FindOne().SetSort(bson.D{{Key: "redeemedAt", Value: -1}}).SetProjection(bson.D{{Key: "redeemedAt", Value: 1}})).Decode(&last)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return invite.Usage{}, Classify("reading the latest redemption of "+code, err)
	}
	return invite.Usage{Used: used, LastRedemption: last.RedeemedAt}, nil
}
