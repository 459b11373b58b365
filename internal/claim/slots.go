package claim

import "math/rand/v2"

// slotState is what this replica knows of one slot.
type slotState uint8

const (
	free     slotState = iota
	reserved           // in a batch this replica has in flight
	taken              // storage holds a redemption for it
)

// slotView is one replica's picture of a code's slots. It is a cache: the
// unique keys in storage decide, so a stale view costs retries, never safety.
type slotView struct {
	slots    []slotState
	holders  map[string]int // canonical email -> slot
	taken    int
	reserved int
	cursor   int
}

func newSlotView(maxUses int) *slotView {
	return &slotView{slots: make([]slotState, maxUses), holders: map[string]int{}}
}

// grow makes room for slot n (maxUses raised, or a slot beyond a lowered
// maxUses reported by storage).
func (v *slotView) grow(n int) {
	if n > len(v.slots) {
		v.slots = append(v.slots, make([]slotState, n-len(v.slots))...)
	}
}

func (v *slotView) markTaken(slot int, email string) {
	v.grow(slot + 1)
	switch v.slots[slot] {
	case reserved:
		v.reserved--
		v.taken++
	case free:
		v.taken++
	}
	v.slots[slot] = taken
	v.holders[email] = slot
}

func (v *slotView) reserve(slot int) {
	v.slots[slot] = reserved
	v.reserved++
}

// release frees a reserved slot whose claim did not take it.
func (v *slotView) release(slot int) {
	if v.slots[slot] == reserved {
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
