package claim

import (
	"math/rand/v2"
	"testing"
)

func TestSlotViewAccounting(t *testing.T) {
	v := newSlotView(4)
	v.reserve(0)
	v.reserve(1)
	v.markTaken(0, "a", 0) // our claim landed
	v.release(1)           // our claim lost its slot to nobody we know
	v.markTaken(2, "b", 0) // learned from a conflict
	v.markTaken(2, "b", 0) // learned twice: counted once
	v.markTaken(6, "c", 0) // beyond a lowered maxUses
	if v.taken != 3 || v.reserved != 0 || len(v.slots) != 7 {
		t.Fatalf("taken %d reserved %d len %d; want 3 0 7", v.taken, v.reserved, len(v.slots))
	}
	if v.holders["a"] != 0 || v.holders["b"] != 2 || v.holders["c"] != 6 {
		t.Fatalf("holders %v", v.holders)
	}
}

// take reserves and returns what nextFree gives, until it gives -1.
func take(v *slotView, limit int) (got []int, lease bool) {
	for {
		s, l := v.nextFree(limit)
		if s < 0 {
			return got, l
		}
		v.reserve(s)
		got = append(got, s)
	}
}

func TestNextFreeFillsLeasedBlocksUpwardsAndAsksForLeases(t *testing.T) {
	v := newSlotView(100) // blocks 0..3, the last of 4 slots
	if got, lease := take(v, 100); len(got) != 0 || !lease {
		t.Fatalf("nothing leased: got %v lease %v; want nothing and a lease", got, lease)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	blocks := v.leaseCandidates(100, 2, rng)
	if len(blocks) != 2 || blocks[0] == blocks[1] {
		t.Fatalf("lease candidates %v, want two blocks", blocks)
	}
	if again := v.leaseCandidates(100, 4, rng); len(again) != 2 {
		t.Fatalf("second request %v: the two blocks not asked for yet", again)
	}
	v.leased(blocks[0], true)
	v.leased(blocks[1], false)
	got, lease := take(v, 100)
	if !lease || len(got) != blockSize || got[0] != blocks[0]*blockSize || got[blockSize-1] != blocks[0]*blockSize+blockSize-1 {
		t.Fatalf("got %v lease %v; want block %d upwards, then a lease", got, lease, blocks[0])
	}
}

func TestNextFreeProbesOthersBlocksFromTheTop(t *testing.T) {
	v := newSlotView(64) // two blocks, both someone else's
	v.blocks[0], v.blocks[1] = theirs, theirs
	for s := range 10 {
		v.markTaken(s, string(rune('a'+s)), 0) // block 0 filled upwards by its holder
	}
	first, _ := v.nextFree(64)
	v.reserve(first)
	second, _ := v.nextFree(64)
	v.reserve(second)
	if first != 31 || second != 63 {
		t.Fatalf("probes %d, %d; want the tops of both blocks, 31 and 63", first, second)
	}
	if s, _ := v.nextFree(64); s != -1 {
		t.Fatalf("probe %d while both blocks have one in flight; want -1", s)
	}
	v.release(63)
	v.markTaken(63, "z", 0)
	v.collided(63) // block 1 is full after all
	v.release(31)
	v.markTaken(31, "ours", 0) // our probe landed: block 0 has room
	for want := 30; want >= 10; want-- {
		s, _ := v.nextFree(64)
		if s != want {
			t.Fatalf("probe %d, want %d: downwards in block 0 only", s, want)
		}
		v.reserve(s)
		v.release(s)
		v.markTaken(s, "ours", 0)
	}
	fresh := newSlotView(64)
	fresh.inherit(v)
	if fresh.blocks[1] != theirs {
		t.Fatalf("after a reload block 1 is %d, want theirs again", fresh.blocks[1])
	}
}

func TestNextFreeHonoursLoweredLimit(t *testing.T) {
	v := newSlotView(10)
	v.blocks[0] = mine
	for s := range 3 {
		v.markTaken(s, string(rune('a'+s)), 0)
	}
	if s, _ := v.nextFree(3); s != -1 {
		t.Fatalf("nextFree(3) = %d with slots 0..2 taken, want -1", s)
	}
	if s, _ := v.nextFree(4); s != 3 {
		t.Fatalf("nextFree(4) = %d, want 3", s)
	}
}

func TestSlotChangingHandsForgetsOldHolder(t *testing.T) {
	v := newSlotView(2)
	v.markTaken(1, "old", 0)
	v.markTaken(1, "new", 0) // old's redemption was deleted; new took the slot
	if _, ok := v.holders["old"]; ok || v.holders["new"] != 1 || v.taken != 1 {
		t.Fatalf("holders %v taken %d", v.holders, v.taken)
	}
}

func TestBadSlotsAreIgnored(t *testing.T) {
	v := newSlotView(2)
	v.markTaken(-1, "a", 0)
	v.markTaken(1_000_000, "b", 0)
	if v.taken != 0 || len(v.slots) != 2 {
		t.Fatalf("taken %d len %d", v.taken, len(v.slots))
	}
}

func TestTallyFollowsEveryChangeOfASlot(t *testing.T) {
	v := newSlotView(3)
	v.markTaken(0, "a", 100)
	v.markClosed(1, 20)
	v.markTaken(0, "b", 7) // slot 0 changed hands
	if v.tally != 27 || v.taken != 1 || v.holders["a"] != 0 && len(v.holders) != 1 {
		t.Fatalf("tally %d taken %d holders %v; want 27, 1, only b", v.tally, v.taken, v.holders)
	}
	if _, ok := v.holders["a"]; ok {
		t.Fatal("the holder before a slot changed hands is forgotten")
	}
	v.markClosed(0, 5) // closed under b: b is no holder any more
	if v.tally != 25 || v.taken != 0 || len(v.holders) != 0 || !v.full(2) || v.full(3) {
		t.Fatalf("tally %d taken %d holders %v full(2) %v full(3) %v", v.tally, v.taken, v.holders, v.full(2), v.full(3))
	}
}
