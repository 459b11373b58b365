package claim

import (
	"math/rand/v2"

	"github.com/velvetrope/velvetrope/internal/invite"
)

// slotState is what this replica knows of one slot.
type slotState uint8

const (
	free     slotState = iota
	reserved           // in a batch this replica has in flight
	taken              // storage holds a redemption for it
	closed             // storage holds a placeholder: nobody may take it
)

// slotView is one replica's picture of a code's slots. It is a cache: the
// unique keys in storage decide, so a stale view costs retries, never safety.
type slotView struct {
	slots    []slotState
	owners   []string       // canonical email of each taken slot
	tallies  []int64        // invite.TallyOf the document in each taken or closed slot
	holders  map[string]int // canonical email -> slot
	taken    int
	reserved int
	cursor   int
	// tally sums tallies: equal to storage's invite.Tally of the code when
	// the view knows every document in the code's slots.
	tally int64
	// fullBelow caches full(limit) for fullAt (-1: not known), so a crowd
	// on a full code is answered without a scan per request.
	fullAt    int
	fullBelow bool
}

func newSlotView(maxUses int) *slotView {
	v := &slotView{holders: map[string]int{}, fullAt: -1}
	v.grow(maxUses)
	return v
}

// grow makes room for slot n (maxUses raised, or a slot beyond a lowered
// maxUses reported by storage). Slots are bounded by invite.MaxUsesLimit.
func (v *slotView) grow(n int) {
	n = min(n, invite.MaxUsesLimit)
	if n > len(v.slots) {
		v.fullAt = -1
		v.slots = append(v.slots, make([]slotState, n-len(v.slots))...)
		v.owners = append(v.owners, make([]string, n-len(v.owners))...)
		v.tallies = append(v.tallies, make([]int64, n-len(v.tallies))...)
	}
}

// markTaken records that email holds slot with a document of tally t. A
// slot that changes hands (its redemption was deleted and someone else took
// it) forgets its old holder.
func (v *slotView) markTaken(slot int, email string, t int64) {
	if v.occupy(slot, taken, t) {
		v.owners[slot] = email
		v.holders[email] = slot
	}
}

// markClosed records a placeholder of tally t in slot.
func (v *slotView) markClosed(slot int, t int64) { v.occupy(slot, closed, t) }

// occupy makes slot hold a document of state st (taken or closed) and tally
// t, undoing what the slot held before. It reports false for a slot no code
// can have: bad data is ignored rather than crashing the replica.
func (v *slotView) occupy(slot int, st slotState, t int64) bool {
	if slot < 0 || slot >= invite.MaxUsesLimit {
		return false
	}
	v.grow(slot + 1)
	v.fullAt = -1
	switch v.slots[slot] {
	case reserved:
		v.reserved--
	case taken:
		if old := v.owners[slot]; v.holders[old] == slot {
			delete(v.holders, old)
		}
		v.owners[slot] = ""
		v.taken--
	}
	if st == taken {
		v.taken++
	}
	v.tally += t - v.tallies[slot]
	v.slots[slot], v.tallies[slot] = st, t
	return true
}

// full reports whether no slot below limit is free or reserved.
func (v *slotView) full(limit int) bool {
	if v.fullAt == limit {
		return v.fullBelow
	}
	v.fullAt, v.fullBelow = limit, true
	for _, st := range v.slots[:min(limit, len(v.slots))] {
		if st == free || st == reserved {
			v.fullBelow = false
			break
		}
	}
	return v.fullBelow
}

func (v *slotView) reserve(slot int) {
	v.fullAt = -1
	v.slots[slot] = reserved
	v.reserved++
}

// release frees a reserved slot whose claim did not take it.
func (v *slotView) release(slot int) {
	if slot < len(v.slots) && v.slots[slot] == reserved {
		v.fullAt = -1
		v.slots[slot] = free
		v.reserved--
	}
}

// nextFree returns the first free slot below limit at or after the cursor,
// wrapping once, or -1. Walking forward from a cursor keeps this replica's
// claims in one region of the slot space, away from other replicas' regions.
func (v *slotView) nextFree(limit int) int {
	limit = min(limit, len(v.slots))
	if limit == 0 {
		return -1
	}
	start := v.cursor % limit
	for i := range limit {
		s := (start + i) % limit
		if v.slots[s] == free {
			v.cursor = s + 1
			return s
		}
	}
	return -1
}

// jump moves the cursor into the largest run of free slots below limit, at a
// random point of its middle half. After a collision this lets two replicas
// split what is left instead of chasing each other along one edge; the random
// point keeps two replicas that reloaded together from picking the same slot.
func (v *slotView) jump(limit int, rng *rand.Rand) {
	limit = min(limit, len(v.slots))
	bestStart, bestLen := 0, 0
	for i := 0; i < limit; {
		if v.slots[i] != free {
			i++
			continue
		}
		j := i
		for j < limit && v.slots[j] == free {
			j++
		}
		if j-i > bestLen {
			bestStart, bestLen = i, j-i
		}
		i = j
	}
	if bestLen == 0 {
		return
	}
	v.cursor = bestStart + bestLen/4 + rng.IntN(bestLen/2+1)
}
