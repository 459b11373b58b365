package invite

import (
	"hash/fnv"
	"slices"
)

// Slots are the unit of the capacity guarantee: a code has slots 0..n-1, each
// a unique key in storage, and a slot holds at most one document: a person's
// redemption, or a closing placeholder. Placeholders are how a lowered
// maxUses stays exact although replicas may still try slots above the new
// limit: the only atomic write there is an insert against a unique key, so
// the operator closes slots with inserts instead of trusting every replica
// to have read the new limit (see PlanSlots).

// Occupant is what storage holds in one slot of a code.
type Occupant struct {
	Slot   int
	Email  string // canonical email of the holder; empty when Closed
	Closed bool   // a placeholder: nobody holds it, nobody may take it
	Tally  int64  // the document's contribution to the code's Tally
}

// Tally summarises every document in a code's slots in one number that
// storage can sum in a single accumulator and a replica can compare with the
// sum over its own view: equal sums mean the view knows every holder and
// every closed slot (up to a 2^-31 chance), so it may answer from memory.
//
// Each document contributes TallyOf: a count of documents, a count of closed
// slots and a 31-bit print of the document, packed so that the sum over a
// code's at most MaxUsesLimit documents cannot carry between the fields.
// (Packing, rather than three accumulators, because the FerretDB test bed
// feeds the documents of a $group to its first accumulator only.)
type Tally int64

const (
	tallyPrintBits = 31
	tallyClosedAt  = 41 // 1000 * 2^31 < 2^41
	tallyDocsAt    = 52 // 1000 * 2^41 < 2^52, and 1000 * 2^52 < 2^62
)

// TallyOf is the contribution of the document in slotID written by the
// request with nonce (placeholders use their own fixed nonce).
func TallyOf(slotID, nonce string, closed bool) int64 {
	h := fnv.New32a()
	h.Write([]byte(slotID))
	h.Write([]byte{0})
	h.Write([]byte(nonce))
	t := int64(1)<<tallyDocsAt | int64(h.Sum32()>>(32-tallyPrintBits))
	if closed {
		t |= 1 << tallyClosedAt
	}
	return t
}

// Docs is how many documents (redemptions and placeholders) the tally counts.
func (t Tally) Docs() int { return int(t >> tallyDocsAt) }

// Closed is how many of them are placeholders.
func (t Tally) Closed() int { return int(t>>tallyClosedAt) & (1<<(tallyDocsAt-tallyClosedAt) - 1) }

// Used is how many people hold a slot.
func (t Tally) Used() int { return t.Docs() - t.Closed() }

// PlanSlots decides which slots to close (insert a placeholder) and which to
// reopen (delete one) so that a code admits exactly max(0, maxUses-holders)
// more people. space is the highest maxUses the code ever had: every slot a
// replica may ever have tried lies below it. A slot occupied at or above
// space (data from before space was recorded, or a space lost with its
// document) widens it: every holder above maxUses counts, wherever it sits.
//
// The rule, and why it is safe while replicas keep inserting:
//  1. Every free slot in [maxUses, space) is closed. Until then a replica that
//     has not seen the new limit may still add a holder up there, so nothing
//     is reopened in the same round.
//  2. Then the holders above the limit (H) can only shrink, and the free
//     slots below it number maxUses - holders below - closed below (C). New
//     holders in total can never exceed maxUses - (everyone) as long as
//     C >= H, so C is raised to H by closing free low slots (as many as
//     there are), or lowered to H by reopening closed low slots.
//
// Closing more than needed is always safe, reopening only when step 1 is
// done; a caller applies the plan and plans again until it is empty, because
// concurrent redemptions can take the slots it meant to close.
func PlanSlots(maxUses, space int, occ []Occupant) (closeSlots, reopen []int) {
	space = max(space, maxUses)
	for _, o := range occ {
		space = max(space, o.Slot+1)
	}
	space = min(space, MaxUsesLimit)
	state := make([]*Occupant, space)
	for i := range occ {
		if o := &occ[i]; o.Slot >= 0 && o.Slot < space {
			state[o.Slot] = o
		}
	}
	var highHolders, lowClosed int
	var lowFree, lowClosedSlots []int
	for slot, o := range state {
		switch {
		case slot >= maxUses && o == nil:
			closeSlots = append(closeSlots, slot)
		case slot >= maxUses && !o.Closed:
			highHolders++
		case slot >= maxUses:
		case o == nil:
			lowFree = append(lowFree, slot)
		case o.Closed:
			lowClosed++
			lowClosedSlots = append(lowClosedSlots, slot)
		}
	}
	if len(closeSlots) > 0 {
		return closeSlots, nil
	}
	switch {
	case lowClosed < highHolders:
		// Close from the top, so the slots replicas walk first stay open.
		n := min(highHolders-lowClosed, len(lowFree))
		closeSlots = slices.Clone(lowFree[len(lowFree)-n:])
	case lowClosed > highHolders:
		reopen = lowClosedSlots[:lowClosed-highHolders]
	}
	return closeSlots, reopen
}
