package claim

import (
	"errors"
	"testing"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// A queued request whose client leaves takes its admission place with it,
// and the same person asking again behind it takes its place in the queue;
// a follower whose client left too is answered and gives its place back.
func TestLeavingHandsOverToFollowers(t *testing.T) {
	s := New(nil, Config{MaxPending: 8}, logr.Discard())
	c := newCode(invite.Invitation{Code: "c", MaxUses: 5, State: invite.StateActive})
	req := func() *request {
		s.pending <- struct{}{}
		return &request{done: make(chan answer, 1)}
	}
	r, goneFollower, follower, behind := req(), req(), req(), req()
	goneFollower.gone = true
	r.followers = []*request{goneFollower, follower}
	r.elem = c.queue.PushBack(r)
	behind.elem = c.queue.PushBack(behind)

	s.leaveLocked(c, r)
	if c.queue.Len() != 2 || c.queue.Front().Value != follower || follower.elem == nil {
		t.Fatalf("queue %d long, front %v: the follower should stand where its leader stood", c.queue.Len(), c.queue.Front().Value)
	}
	if a := <-goneFollower.done; !errors.Is(a.err, invite.ErrUnavailable) {
		t.Fatalf("a follower whose client left is answered: %v", a.err)
	}
	if len(s.pending) != 2 {
		t.Fatalf("%d admission places taken, want 2 (follower and behind)", len(s.pending))
	}
	s.leaveLocked(c, behind)
	if c.queue.Len() != 1 || len(s.pending) != 1 {
		t.Fatalf("queue %d, places %d after a second leave", c.queue.Len(), len(s.pending))
	}
}
