package claim

import (
	"errors"
	"testing"

	"github.com/go-logr/logr"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// A queued request whose client leaves takes its admission place with it,
// and the same person asking again behind it takes its place in the queue;
// a follower whose client leaves gives its place back at once.
func TestLeavingHandsOverToFollowers(t *testing.T) {
	s := New(nil, Config{MaxPending: 8}, logr.Discard())
	c := newCode(invite.Invitation{Code: "c", MaxUses: 5, State: invite.StateActive})
	req := func() *request {
		s.pending <- struct{}{}
		return &request{done: make(chan answer, 1)}
	}
	r, f1, f2, behind := req(), req(), req(), req()
	r.followers, f1.leader, f2.leader = []*request{f1, f2}, r, r
	r.elem = c.queue.PushBack(r)
	behind.elem = c.queue.PushBack(behind)

	s.leaveLocked(c, f1) // a follower leaves
	if len(r.followers) != 1 || r.followers[0] != f2 || len(s.pending) != 3 {
		t.Fatalf("followers %d, places %d: a leaving follower leaves its leader's list and its place", len(r.followers), len(s.pending))
	}
	s.leaveLocked(c, r) // the leader leaves
	if c.queue.Len() != 2 || c.queue.Front().Value != f2 || f2.elem == nil || f2.leader != nil {
		t.Fatalf("queue %d long, front %v: the follower should stand where its leader stood", c.queue.Len(), c.queue.Front().Value)
	}
	if a := <-r.done; !errors.Is(a.err, invite.ErrUnavailable) {
		t.Fatalf("the leaving leader is answered: %v", a.err)
	}
	if len(s.pending) != 2 {
		t.Fatalf("%d admission places taken, want 2 (f2 and behind)", len(s.pending))
	}
	s.leaveLocked(c, behind)
	if c.queue.Len() != 1 || len(s.pending) != 1 {
		t.Fatalf("queue %d, places %d after a third leave", c.queue.Len(), len(s.pending))
	}
}
