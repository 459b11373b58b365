package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
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
	UpdatedAt time.Time  `bson:"updatedAt"`
}

// PutInvitation creates or replaces the document of inv.Code. Only one writer
// (the operator's leader, or the local seeder) writes invitations, so a plain
// upsert is enough even where updates are not atomic.
func (s *Store) PutInvitation(ctx context.Context, inv invite.Invitation) error {
	doc := invitationDoc{
		Code:      inv.Code,
		MaxUses:   inv.MaxUses,
		State:     string(inv.State),
		Campaign:  inv.Campaign,
		UpdatedAt: s.now().UTC(),
	}
	if !inv.ExpiresAt.IsZero() {
		t := inv.ExpiresAt.UTC()
		doc.ExpiresAt = &t
	}
	_, err := s.invitations.ReplaceOne(ctx, bson.D{{Key: "_id", Value: inv.Code}}, doc, options.Replace().SetUpsert(true))
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
			Code:      d.Code,
			MaxUses:   d.MaxUses,
			State:     invite.State(d.State),
			Campaign:  d.Campaign,
			UpdatedAt: d.UpdatedAt,
		}
		if d.ExpiresAt != nil {
			out[i].ExpiresAt = *d.ExpiresAt
		}
	}
	return out, nil
}
