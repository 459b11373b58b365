package mongostore

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// replicaDoc says that redeemer process ID, serving Campaign, was alive at
// At and takes its peers' claims at Addr.
type replicaDoc struct {
	ID       string    `bson:"_id"`
	Campaign string    `bson:"campaign"`
	Addr     string    `bson:"addr"`
	At       time.Time `bson:"at"`
}

// forgetReplicasAfter: a replica silent this long is removed by the next
// reader, so the collection holds only the recent replicas of each campaign.
const forgetReplicasAfter = time.Minute

// Announce records that replica id of campaign is alive now and takes its
// peers' claims at addr. Only id writes its document, so a plain replace is
// enough even where updates are not atomic. Replicas choose writers among
// the announced ones: an announcement is a routing hint, never a guarantee.
func (s *Store) Announce(ctx context.Context, id, campaign, addr string) error {
	doc := replicaDoc{ID: id, Campaign: campaign, Addr: addr, At: s.now().UTC()}
	_, err := s.replicas.ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, doc, options.Replace().SetUpsert(true))
	return Classify("announcing this replica", err)
}

// Withdraw removes replica id's announcement, so that its peers stop
// handing it claims before it stops (a draining pod).
func (s *Store) Withdraw(ctx context.Context, id string) error {
	_, err := s.replicas.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	return Classify("withdrawing this replica", err)
}

// Replicas returns the replicas of campaign announced since then, by id,
// with the address their peers reach them at. It removes the announcements
// of replicas silent for a minute, which died without withdrawing.
func (s *Store) Replicas(ctx context.Context, campaign string, since time.Time) (map[string]string, error) {
	cur, err := s.replicas.Find(ctx, bson.D{{Key: "campaign", Value: campaign}})
	if err != nil {
		return nil, Classify("reading replicas", err)
	}
	var docs []replicaDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, Classify("reading replicas", err)
	}
	live := make(map[string]string, len(docs))
	var gone bson.A
	for _, d := range docs {
		switch {
		case !d.At.Before(since):
			live[d.ID] = d.Addr
		case since.Sub(d.At) > forgetReplicasAfter:
			gone = append(gone, d.ID)
		}
	}
	if len(gone) > 0 {
		// Best effort: the next reader tries again. The date bound keeps
		// a replica that announced itself meanwhile.
		cutoff := since.Add(-forgetReplicasAfter)
		s.replicas.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: gone}}}, {Key: "at", Value: bson.D{{Key: "$lt", Value: cutoff}}}})
	}
	return live, nil
}
