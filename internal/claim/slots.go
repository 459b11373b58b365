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
	// blocks: who fills each block of blockSize slots, as far as this
	// replica knows; probe: where the next probe into others' blocks starts.
	blocks []blockState
	probe  int
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
		v.blocks = append(v.blocks, make([]blockState, blocksFor(n)-len(v.blocks))...)
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

// occupants lists the documents the view knows of, as Store.Occupants
// would: the taken and closed slots.
func (v *slotView) occupants() []invite.Occupant {
	occ := make([]invite.Occupant, 0, v.taken)
	for slot, st := range v.slots {
		switch st {
		case taken:
			occ = append(occ, invite.Occupant{Slot: slot, Email: v.owners[slot], Tally: v.tallies[slot]})
		case closed:
			occ = append(occ, invite.Occupant{Slot: slot, Closed: true, Tally: v.tallies[slot]})
		}
	}
	return occ
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

// reserve marks slot as being claimed by a batch in flight. A probe into
// another replica's block makes it wait there until the probe's answer, so
// that a full block costs one wasted claim, not a batch of them.
func (v *slotView) reserve(slot int) {
	v.fullAt = -1
	v.slots[slot] = reserved
	v.reserved++
	if b := slot / blockSize; v.blocks[b] == theirs {
		v.blocks[b] = probing
	}
}

// release frees a reserved slot once its claim has its answer (a slot it
// took is marked taken after this).
func (v *slotView) release(slot int) {
	if slot < 0 || slot >= len(v.slots) {
		return
	}
	if b := slot / blockSize; v.blocks[b] == probing {
		v.blocks[b] = theirs
	}
	if v.slots[slot] == reserved {
		v.fullAt = -1
		v.slots[slot] = free
		v.reserved--
	}
}

// blockSize is how many slots a lease covers (Store.Lease): 32 blocks for a
// code of 1,000, so two replicas rarely want the same one, and a block fills
// in a batch or two, so a lease is rarely the thing a batch waits for.
const blockSize = 32

// blockState is what this replica knows of who fills a block of slots.
type blockState uint8

const (
	unleased blockState = iota // no lease known: ask for it before using it
	leasing                    // asked for, no answer yet
	mine                       // this replica leased it
	theirs                     // another replica leased it
	probing                    // theirs, with one claim of ours in flight in it
	spent                      // a claim met another writer in it: believed full until the next reload
)

func blocksFor(slots int) int { return (slots + blockSize - 1) / blockSize }

// nextFree returns the slot to claim next below limit, or -1:
//
//  1. the lowest free slot of a block this replica leased, so replicas fill
//     disjoint blocks and never collide while unleased blocks remain;
//  2. none there but an unleased block has a free slot: -1 with lease true
//     (lease it first, see leaseCandidates);
//  3. every block leased: the highest free slot of another replica's block
//     not believed full, one block after another. Leaseholders fill their
//     blocks upwards, so a probe from the top meets them last, and a probe
//     that meets a taken slot marks the block spent (see collided).
func (v *slotView) nextFree(limit int) (slot int, lease bool) {
	limit = min(limit, len(v.slots))
	nb := blocksFor(limit)
	for b := range nb {
		if v.blocks[b] != mine {
			continue
		}
		for s := b * blockSize; s < min((b+1)*blockSize, limit); s++ {
			if v.slots[s] == free {
				return s, false
			}
		}
	}
	for b := range nb {
		if (v.blocks[b] == unleased || v.blocks[b] == leasing) && v.hasFree(b, limit) {
			return -1, true
		}
	}
	for range nb {
		b := v.probe % nb
		v.probe++
		if v.blocks[b] != theirs {
			continue
		}
		for s := min((b+1)*blockSize, limit) - 1; s >= b*blockSize; s-- {
			if v.slots[s] == free {
				return s, false
			}
		}
	}
	return -1, false
}

func (v *slotView) hasFree(b, limit int) bool {
	for s := b * blockSize; s < min((b+1)*blockSize, limit); s++ {
		if v.slots[s] == free {
			return true
		}
	}
	return false
}

// freeMine counts the free slots below limit in blocks this replica leased.
func (v *slotView) freeMine(limit int) int {
	n := 0
	limit = min(limit, len(v.slots))
	for b := range blocksFor(limit) {
		if v.blocks[b] != mine {
			continue
		}
		for s := b * blockSize; s < min((b+1)*blockSize, limit); s++ {
			if v.slots[s] == free {
				n++
			}
		}
	}
	return n
}

// leaseCandidates picks up to n unleased blocks below limit with a free
// slot, at random so that replicas asking at once rarely ask for the same
// ones, and marks them leasing.
func (v *slotView) leaseCandidates(limit, n int, rng *rand.Rand) []int {
	limit = min(limit, len(v.slots))
	var cand []int
	for b := range blocksFor(limit) {
		if v.blocks[b] == unleased && v.hasFree(b, limit) {
			cand = append(cand, b)
		}
	}
	rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	cand = cand[:min(n, len(cand))]
	for _, b := range cand {
		v.blocks[b] = leasing
	}
	return cand
}

// leased records the answer to a lease request for block.
func (v *slotView) leased(block int, granted bool) {
	if block < len(v.blocks) && v.blocks[block] == leasing {
		v.blocks[block] = theirs
		if granted {
			v.blocks[block] = mine
		}
	}
}

// collided records that a claim of slot met another writer. In another
// replica's block, a probe has reached the part its holder filled; in ours,
// another replica is probing it from the top (or took over our lease). Either
// way the rest of the block is likely taken: leave it until a reload shows
// what is really free, rather than collide slot after slot.
func (v *slotView) collided(slot int) {
	if b := slot / blockSize; b < len(v.blocks) && (v.blocks[b] == theirs || v.blocks[b] == probing || v.blocks[b] == mine) {
		v.blocks[b] = spent
	}
}

// inherit takes over what old knew of blocks, when a reload replaces it:
// leases stay, and spent blocks become probeable again, because the reload
// shows which of their slots are really free.
func (v *slotView) inherit(old *slotView) {
	copy(v.blocks, old.blocks)
	for b, st := range v.blocks {
		if st == spent || st == probing { // probes in flight are reserved again by the reload
			v.blocks[b] = theirs
		}
	}
	v.probe = old.probe
}
