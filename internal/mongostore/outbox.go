package mongostore

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// RedemptionTimes returns when each redemption of code was made, oldest
// first: a player's number on the code is 1 + the redemptions made before
// theirs. One read answers every email of the code a dispatcher sends for a
// while (see mail.Dispatcher); counting per email would read them once each,
// and on the FerretDB test bed, which answers from an index only a filter on
// _id alone, scan the whole collection each time.
func (s *Store) RedemptionTimes(ctx context.Context, code string) ([]time.Time, error) {
	cur, err := s.redemptions.Find(ctx, bson.D{{Key: "code", Value: code}, notClosed},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 0}, {Key: "redeemedAt", Value: 1}}))
	if err != nil {
		return nil, Classify("reading the redemption times of "+code, err)
	}
	var docs []struct {
		RedeemedAt time.Time `bson:"redeemedAt"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, Classify("reading the redemption times of "+code, err)
	}
	times := make([]time.Time, len(docs))
	for i, d := range docs {
		times[i] = d.RedeemedAt
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	return times, nil
}

// updatesAreReadThenWritten remembers, per Store, whether its server is
// FerretDB v1 (see readThenWrite).
var updatesAreReadThenWritten sync.Map // *Store -> bool

// readThenWrite reports whether the server is FerretDB v1, the test bed.
// There no update is atomic: it reads the documents its filter matches (from
// an index only when the filter is {_id: <string>} alone, otherwise by
// scanning and decoding the whole collection), then rewrites each whole
// document by _id. A filter with a second field therefore buys nothing there
// but the scan. Anything else (MongoDB, or a server that does not say) gets
// the filter that is atomic on MongoDB; the answer is remembered once known.
func (s *Store) readThenWrite(ctx context.Context) bool {
	if v, ok := updatesAreReadThenWritten.Load(s); ok {
		return v.(bool)
	}
	var info struct {
		FerretDB *string `bson:"ferretdbVersion"`
	}
	if err := s.redemptions.Database().RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&info); err != nil {
		return false
	}
	v := info.FerretDB != nil && ferretDBv1(*info.FerretDB)
	updatesAreReadThenWritten.Store(s, v)
	return v
}

// ferretDBv1 reads FerretDB's version: "v1.24.0", or "unknown" when built
// without version information, as the test bed's is. Only a version that
// names a later major release is taken for one whose updates may be atomic.
func ferretDBv1(version string) bool {
	major, _, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	n, err := strconv.Atoi(major)
	return err != nil || n <= 1
}

// updateRedemption applies update to the redemption in slot id if it still
// holds the redemption written with nonce, and reports whether it did.
//
// On MongoDB the filter {_id, nonce} makes that one atomic write: a
// redemption revoked and its slot taken by someone else meanwhile is left
// alone. On the test bed (readThenWrite) the server would check the same
// filter between its own read and write only after scanning the collection,
// so the nonce is checked here on a read by _id, and the update names _id
// alone: two reads by _id instead of a scan, with the same kind of window
// between read and write that the test bed's own updates always have.
func (s *Store) updateRedemption(ctx context.Context, id, nonce string, update bson.D) (bool, error) {
	filter := bson.D{{Key: "_id", Value: id}, {Key: "nonce", Value: nonce}}
	if s.readThenWrite(ctx) {
		var d struct {
			Nonce string `bson:"nonce"`
		}
		err := s.redemptions.FindOne(ctx, bson.D{{Key: "_id", Value: id}}, options.FindOne().SetProjection(bson.D{{Key: "nonce", Value: 1}})).Decode(&d)
		if errors.Is(err, mongo.ErrNoDocuments) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if d.Nonce != nonce {
			return false, nil
		}
		filter = filter[:1]
	}
	res, err := s.redemptions.UpdateOne(ctx, filter, update)
	if err != nil {
		return false, err
	}
	return res.MatchedCount == 1, nil
}
