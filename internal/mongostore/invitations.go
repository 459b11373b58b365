package mongostore

import (
	"context"
	"errors"
	"fmt"
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
	UpdatedAt     time.Time     `bson:"updatedAt"`
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
// before owners existed: the first writer adopts it). The filter names the owner, so for a
// code owned by someone else the upsert becomes an insert of an existing _id,
// which the unique index refuses: invite.ErrCodeTaken, decided atomically.
// Only one writer (the operator's leader, or the local seeder) writes
// invitations, so the replace itself need not be atomic.
func (s *Store) PutInvitation(ctx context.Context, inv invite.Invitation) error {
	doc := invitationDoc{
		Code:          inv.Code,
		MaxUses:       inv.MaxUses,
		State:         string(inv.State),
		Campaign:      inv.Campaign,
		Owner:         inv.Owner,
		MailTemplates: templatesToDocs(inv.MailTemplates),
		UpdatedAt:     s.now().UTC(),
	}
	if !inv.ExpiresAt.IsZero() {
		t := inv.ExpiresAt.UTC()
		doc.ExpiresAt = &t
	}
	filter := bson.D{{Key: "_id", Value: inv.Code}, {Key: "owner", Value: bson.D{{Key: "$in", Value: bson.A{inv.Owner, nil}}}}}
	_, err := s.invitations.ReplaceOne(ctx, filter, doc, options.Replace().SetUpsert(true))
	if mongo.IsDuplicateKeyError(err) {
		return fmt.Errorf("writing invitation %s: %w", inv.Code, invite.ErrCodeTaken)
	}
	return classify("writing invitation "+inv.Code, err)
}

// Invitations returns every invitation document.
func (s *Store) Invitations(ctx context.Context) ([]invite.Invitation, error) {
	cur, err := s.invitations.Find(ctx, bson.D{})
	if err != nil {
		return nil, classify("listing invitations", err)
	}
	var docs []invitationDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, classify("listing invitations", err)
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
	return templatesFromDocs(d.MailTemplates), classify("reading the mail templates of "+code, err)
}
