package mongostore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// invitationDoc is one document of the invitations collection.
type invitationDoc struct {
	Code      string     `bson:"_id"`
	MaxUses   int        `bson:"maxUses"`
	State     string     `bson:"state"`
	ExpiresAt *time.Time `bson:"expiresAt"`
	Campaign  string     `bson:"campaign"`
	Owner     string     `bson:"owner"`
	// MailTemplates: see invite.Invitation. A list, not a map: the keys
	// contain dots, which field names must not.
	MailTemplates []templateDoc `bson:"mailTemplates,omitempty"`
	// SlotSpace is the highest maxUses the code ever had: replicas may have
	// tried any slot below it (see invite.PlanSlots).
	SlotSpace int       `bson:"slotSpace"`
	UpdatedAt time.Time `bson:"updatedAt"`
}

type templateDoc struct {
	Name   string `bson:"name"`
	Source string `bson:"source"`
}

func templatesToDocs(m map[string]string) []templateDoc {
	out := make([]templateDoc, 0, len(m))
	for k, v := range m {
		out = append(out, templateDoc{k, v})
	}
	slices.SortFunc(out, func(a, b templateDoc) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func templatesFromDocs(docs []templateDoc) map[string]string {
	if len(docs) == 0 {
		return nil
	}
	m := make(map[string]string, len(docs))
	for _, d := range docs {
		m[d.Name] = d.Source
	}
	return m
}

// PutInvitation creates or replaces the document of inv.Code, provided it is
// new, already belongs to inv.Owner, or records no owner at all (written
// before owners existed: the first writer adopts it). Ownership is settled
// before anything else (putOwned), so for a code owned by someone else
// nothing changes: invite.ErrCodeTaken, decided atomically.
//
// Before the document, it closes or reopens slots so that storage admits
// exactly maxUses people (BalanceSlots): a raised limit is open before any
// replica reads it, and a lowered one is enforced whatever replicas read.
//
// Only one writer (the operator's leader, or the local seeder) writes
// invitations and placeholders, so reading the old document first and the
// replace itself need not be atomic.
func (s *Store) PutInvitation(ctx context.Context, inv invite.Invitation) error {
	old, err := s.invitation(ctx, inv.Code)
	if err != nil {
		return err
	}
	if old.Owner != "" && old.Owner != inv.Owner {
		return fmt.Errorf("writing invitation %s: %w", inv.Code, invite.ErrCodeTaken)
	}
	doc := invitationDoc{
		Code:          inv.Code,
		MaxUses:       inv.MaxUses,
		State:         string(inv.State),
		Campaign:      inv.Campaign,
		Owner:         inv.Owner,
		MailTemplates: templatesToDocs(inv.MailTemplates),
		SlotSpace:     max(inv.MaxUses, old.SlotSpace, old.MaxUses),
		UpdatedAt:     s.now().UTC(),
	}
	if !inv.ExpiresAt.IsZero() {
		t := inv.ExpiresAt.UTC()
		doc.ExpiresAt = &t
	}
	if old.Owner != inv.Owner {
		// Own the code before touching its slots: of two Invitations
		// claiming one code, the loser must not have balanced them. A new
		// code is written as it is; an adopted one keeps its old limit
		// until its slots are balanced.
		first := doc
		if old.Code != "" {
			first, first.Owner, first.SlotSpace = old, inv.Owner, doc.SlotSpace
		}
		if err := s.putOwned(ctx, first); err != nil {
			return err
		}
	}
	if err := s.balance(ctx, doc); err != nil {
		return err
	}
	if err := s.putOwned(ctx, doc); err != nil {
		return err
	}
	return s.invitationsChanged(ctx)
}

// HoldsInvitation reports whether the document of inv.Code says what
// PutInvitation would write from inv, in one read by _id: a periodic resync
// that finds it so writes nothing, balances no slots and leaves the
// invitations' version alone (a new version makes every redeemer reload
// every invitation).
func (s *Store) HoldsInvitation(ctx context.Context, inv invite.Invitation) (bool, error) {
	d, err := s.invitation(ctx, inv.Code)
	if err != nil || d.Code == "" {
		return false, err
	}
	var expires time.Time
	if d.ExpiresAt != nil {
		expires = *d.ExpiresAt
	}
	return d.MaxUses == inv.MaxUses && d.State == string(inv.State) && d.Campaign == inv.Campaign && d.Owner == inv.Owner &&
		d.SlotSpace >= inv.MaxUses && expires.Equal(inv.ExpiresAt) && maps.Equal(templatesFromDocs(d.MailTemplates), inv.MailTemplates), nil
}

// invitationsVersionID names the meta document whose version changes with
// every write of an invitation.
const invitationsVersionID = "invitations"

// invitationsChanged gives the invitations a new version, after the write:
// a replica that reads the new version reads the write too. A random value,
// not a counter: the single writer needs no atomic increment, and a version
// never comes back.
func (s *Store) invitationsChanged(ctx context.Context) error {
	b := make([]byte, 12)
	rand.Read(b)
	_, err := s.meta.UpdateOne(ctx, bson.D{{Key: "_id", Value: invitationsVersionID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: hex.EncodeToString(b)}, {Key: "at", Value: s.now().UTC()}}}},
		options.UpdateOne().SetUpsert(true))
	return Classify("recording a change of invitations", err)
}

// InvitationsVersion is what a replica polls: it changes whenever an
// invitation is written through PutInvitation ("" before the first write).
func (s *Store) InvitationsVersion(ctx context.Context) (string, error) {
	var d struct {
		Version string `bson:"version"`
	}
	err := s.meta.FindOne(ctx, bson.D{{Key: "_id", Value: invitationsVersionID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return "", nil
	}
	return d.Version, Classify("reading the version of invitations", err)
}

// putOwned upserts d unless another owner has the code: the filter names the
// owner, so the upsert becomes an insert of an existing _id, which the unique
// index refuses atomically.
func (s *Store) putOwned(ctx context.Context, d invitationDoc) error {
	filter := bson.D{{Key: "_id", Value: d.Code}, {Key: "owner", Value: bson.D{{Key: "$in", Value: bson.A{d.Owner, nil}}}}}
	_, err := s.invitations.ReplaceOne(ctx, filter, d, options.Replace().SetUpsert(true))
	if mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("writing invitation %s: %w", d.Code, invite.ErrCodeTaken)
	}
	return Classify("writing invitation "+d.Code, err)
}

// invitation reads the document of code; a zero document when there is none.
func (s *Store) invitation(ctx context.Context, code string) (invitationDoc, error) {
	var d invitationDoc
	err := s.invitations.FindOne(ctx, bson.D{{Key: "_id", Value: code}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return invitationDoc{}, nil
	}
	return d, Classify("reading invitation "+code, err)
}

// BalanceSlots brings the closed slots of code in line with its maxUses
// (invite.PlanSlots), for revocations since the last PutInvitation: a
// holder above a lowered limit who is revoked gives a closed slot back. It
// costs one read when maxUses was never lowered. Call it from the single
// writer of invitations only: two writers reopening at once could reopen
// one slot too many.
func (s *Store) BalanceSlots(ctx context.Context, code string) error {
	d, err := s.invitation(ctx, code)
	if err != nil || d.Code == "" {
		return err
	}
	return s.balance(ctx, d)
}

// closedDoc is a placeholder in a slot: it holds the slot's unique _id so no
// redemption can take it, and a unique email that no canonical address can
// equal (it has no @). It has no mail, so no dispatcher ever sees it.
type closedDoc struct {
	ID     string `bson:"_id"`
	Code   string `bson:"code"`
	Slot   int    `bson:"slot"`
	Email  string `bson:"email"`
	Nonce  string `bson:"nonce"`
	Closed int    `bson:"closed"`
	Tally  int64  `bson:"tally"`
}

const closedNonce = "closed"

// maxBalanceRounds bounds BalanceSlots: each round can only lose slots it
// meant to close to redemptions made meanwhile, which a code has at most
// maxUses of.
const maxBalanceRounds = 8

func (s *Store) balance(ctx context.Context, d invitationDoc) error {
	if d.SlotSpace <= d.MaxUses {
		// Never lowered, or raised back to the top: usually no slot is
		// closed and nobody sits above the limit (one indexed look-up to be
		// sure: data from before slotSpace was recorded, or a document
		// recreated by hand, may say otherwise).
		err := s.redemptions.FindOne(ctx, bson.D{{Key: "code", Value: d.Code}, {Key: "$or", Value: bson.A{
			bson.D{{Key: "closed", Value: 1}},
			bson.D{{Key: "slot", Value: bson.D{{Key: "$gte", Value: d.MaxUses}}}},
		}}}, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return nil
		}
		if err != nil {
			return Classify("looking for closed slots of "+d.Code, err)
		}
	}
	for range maxBalanceRounds {
		occ, err := s.Occupants(ctx, d.Code)
		if err != nil {
			return err
		}
		closeSlots, reopen := invite.PlanSlots(d.MaxUses, d.SlotSpace, occ)
		if len(closeSlots) == 0 && len(reopen) == 0 {
			return nil
		}
		if len(closeSlots) > 0 {
			docs := make([]any, len(closeSlots))
			for i, slot := range closeSlots {
				id := invite.SlotID(d.Code, slot)
				docs[i] = closedDoc{ID: id, Code: d.Code, Slot: slot, Email: "closed:" + id, Nonce: closedNonce, Closed: 1,
					Tally: invite.TallyOf(id, closedNonce, true)}
			}
			// A duplicate means a redemption took the slot first: the next
			// round plans again with it.
			_, err := s.redemptions.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
			var bwe mongo.BulkWriteException
			if err != nil && !(errors.As(err, &bwe) && bwe.WriteConcernError == nil && onlyDuplicates(bwe)) {
				return Classify("closing slots of "+d.Code, err)
			}
		}
		if len(reopen) > 0 {
			ids := make([]string, len(reopen))
			for i, slot := range reopen {
				ids[i] = invite.SlotID(d.Code, slot)
			}
			_, err := s.redemptions.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "closed", Value: 1}})
			if err != nil {
				return Classify("reopening slots of "+d.Code, err)
			}
		}
	}
	return fmt.Errorf("balancing the slots of %s: %w", d.Code, &invite.UnavailableError{Reason: "other", Err: errors.New("slots kept changing")})
}

func onlyDuplicates(bwe mongo.BulkWriteException) bool {
	for _, we := range bwe.WriteErrors {
		if we.Code != duplicateKey {
			return false
		}
	}
	return true
}

// Invitations returns every invitation document.
func (s *Store) Invitations(ctx context.Context) ([]invite.Invitation, error) {
	cur, err := s.invitations.Find(ctx, bson.D{})
	if err != nil {
		return nil, Classify("listing invitations", err)
	}
	var docs []invitationDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, Classify("listing invitations", err)
	}
	out := make([]invite.Invitation, len(docs))
	for i, d := range docs {
		out[i] = invite.Invitation{
			Code:          d.Code,
			MaxUses:       d.MaxUses,
			State:         invite.State(d.State),
			Campaign:      d.Campaign,
			Owner:         d.Owner,
			MailTemplates: templatesFromDocs(d.MailTemplates),
			UpdatedAt:     d.UpdatedAt,
		}
		if d.ExpiresAt != nil {
			out[i].ExpiresAt = *d.ExpiresAt
		}
	}
	return out, nil
}

// MailTemplates returns the email template overrides of code (nil: defaults).
func (s *Store) MailTemplates(ctx context.Context, code string) (map[string]string, error) {
	var d invitationDoc
	err := s.invitations.FindOne(ctx, bson.D{{Key: "_id", Value: code}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	return templatesFromDocs(d.MailTemplates), Classify("reading the mail templates of "+code, err)
}
