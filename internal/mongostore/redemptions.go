package mongostore

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
// claims costs little more than one for one. Each claim gets its own answer.
// A duplicate is explained by reading the slot it named, by _id
// (explainBySlot); one the slot does not explain was the person's email, and
// is answered ClaimEmailConflict: ExplainEmails reads who holds it, later, so
// that the claims that did land are answered without waiting for that read.
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
	s.explainBySlot(ctx, claims, dups, results)
	return results
}

// lookups bounds the reads by _id one batch's duplicates run at once.
const lookups = 8

// explainBySlot reads the slot of each duplicate at indexes dups, one read
// by _id each, several at once. Reads by _id, not one query for all: equality
// on _id is the one query every server answers from an index (the test bed
// scans the whole collection for anything else, $in on _id included).
func (s *Store) explainBySlot(ctx context.Context, claims []invite.Redemption, dups []int, results []invite.ClaimResult) {
	s.each(len(dups), func(i int) {
		idx := dups[i]
		c := claims[idx]
		var d redemptionDoc
		err := s.redemptions.FindOne(ctx, bson.D{{Key: "_id", Value: invite.SlotID(c.Code, c.Slot)}}).Decode(&d)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			// The slot is free: the email was the duplicate (or the
			// slot's holder was deleted meanwhile: ExplainEmails tells).
			results[idx] = invite.ClaimResult{Status: invite.ClaimEmailConflict}
		case err != nil:
			results[idx] = invite.ClaimResult{Status: invite.ClaimFailed, Err: Classify("reading a conflicting slot", err)}
		default:
			results[idx] = slotConflict(c, d)
		}
	})
}

// slotConflict explains a duplicate by the document d found in the claim's
// slot. When the slot is someone else's, the person's email may be held too:
// the retry on another slot finds out.
func slotConflict(c invite.Redemption, d redemptionDoc) invite.ClaimResult {
	switch {
	case d.Nonce == c.Nonce:
		return invite.ClaimResult{Status: invite.ClaimInserted, Tally: d.Tally} // our own retried write
	case d.Closed != 0:
		return invite.ClaimResult{Status: invite.ClaimSlotClosed, Tally: d.Tally}
	case d.Email == c.Email.Canonical:
		return invite.ClaimResult{Status: invite.ClaimEmailTaken, Holder: d.redemption(), Tally: d.Tally}
	}
	return invite.ClaimResult{Status: invite.ClaimSlotTaken, Holder: d.redemption(), Tally: d.Tally}
}

// ExplainEmails answers claims that Claim answered ClaimEmailConflict:
// ClaimEmailTaken with the holder, or ClaimRetry when nobody holds the email
// any more (revoked meanwhile). The holders hints explain most
// (HintedHolders); only the claims they do not explain are read by email, all
// of them in one query: on the test bed a read by email scans the whole
// collection, and a crowd's spelling variants would otherwise pay one such
// scan after another.
func (s *Store) ExplainEmails(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	results := s.HintedHolders(ctx, claims)
	rest := invite.Unanswered(results)
	if len(rest) == 0 {
		return results
	}
	emails := make([]string, len(rest))
	for i, idx := range rest {
		emails[i] = claims[idx].Email.Canonical
	}
	cur, err := s.redemptions.Find(ctx, bson.D{{Key: "email", Value: bson.D{{Key: "$in", Value: emails}}}})
	var docs []redemptionDoc
	if err == nil {
		err = cur.All(ctx, &docs)
	}
	if err != nil {
		err = Classify("reading who holds conflicting emails", err)
		for _, idx := range rest {
			results[idx] = invite.ClaimResult{Status: invite.ClaimFailed, Err: err}
		}
		return results
	}
	byEmail := make(map[string]*redemptionDoc, len(docs))
	for i := range docs {
		byEmail[docs[i].Email] = &docs[i]
	}
	for _, idx := range rest {
		results[idx] = emailConflict(claims[idx], byEmail[claims[idx].Email.Canonical])
	}
	return results
}

// HintedHolders answers, from the holders hints (RecordHolders), the claims
// whose person holds a slot: ClaimEmailTaken with the holder (ClaimInserted
// for the claim's own redemption). Every other claim's result is left zero:
// no hint, a stale one, or a failed read (hints are only ever an
// optimisation). One query for the hints (a small collection: on the test
// bed its scan costs less than a read by _id per person), then a read by _id
// of each slot a hint names, because a hint is believed only while that slot
// holds its email.
func (s *Store) HintedHolders(ctx context.Context, claims []invite.Redemption) []invite.ClaimResult {
	results := make([]invite.ClaimResult, len(claims))
	emails := make([]string, len(claims))
	for i, c := range claims {
		emails[i] = c.Email.Canonical
	}
	var hints []holderDoc
	cur, err := s.holders.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: emails}}}})
	if err != nil || cur.All(ctx, &hints) != nil {
		return results
	}
	slotOf := make(map[string]string, len(hints))
	for _, h := range hints {
		slotOf[h.Email] = h.Slot
	}
	var hinted []int
	for i, c := range claims {
		if _, ok := slotOf[c.Email.Canonical]; ok {
			hinted = append(hinted, i)
		}
	}
	s.each(len(hinted), func(j int) {
		i := hinted[j]
		email := claims[i].Email.Canonical
		var d redemptionDoc
		if err := s.redemptions.FindOne(ctx, bson.D{{Key: "_id", Value: slotOf[email]}}).Decode(&d); err == nil && d.Email == email {
			results[i] = emailConflict(claims[i], &d)
		}
	})
	return results
}

// emailConflict explains a claim whose email is held by d (nil: by nobody).
func emailConflict(c invite.Redemption, d *redemptionDoc) invite.ClaimResult {
	switch {
	case d == nil:
		return invite.ClaimResult{Status: invite.ClaimRetry}
	case d.Nonce == c.Nonce:
		return invite.ClaimResult{Status: invite.ClaimInserted, Holder: d.redemption(), Tally: d.Tally}
	}
	return invite.ClaimResult{Status: invite.ClaimEmailTaken, Holder: d.redemption(), Tally: d.Tally}
}

// holderDoc is a hint: the person with this canonical email took this slot.
type holderDoc struct {
	Email string `bson:"_id"`
	Slot  string `bson:"slot"` // invite.SlotID
}

// RecordHolders writes a hint for each claim that took its slot, so that a
// later conflict on the same email is explained by two reads by _id
// (ExplainEmails). Best effort: a hint that is missing or stale (its holder
// was revoked) only sends ExplainEmails to the read by email.
func (s *Store) RecordHolders(ctx context.Context, claims []invite.Redemption) {
	docs := make([]any, len(claims))
	for i, c := range claims {
		docs[i] = holderDoc{Email: c.Email.Canonical, Slot: invite.SlotID(c.Code, c.Slot)}
	}
	s.holders.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
}

// each runs f(0..n-1), lookups at a time: reads by _id, each answered from
// an index, in parallel.
func (s *Store) each(n int, f func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, lookups)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
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
	// The holders hint goes too, so the person's next redemption can write
	// its own (RecordHolders inserts); a hint left behind would only be
	// found stale and cost a read by email.
	s.holders.DeleteOne(ctx, bson.D{{Key: "_id", Value: canonicalEmail}})
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
