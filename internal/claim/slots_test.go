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

func TestNextFreeWalksFromCursorAndWraps(t *testing.T) {
	v := newSlotView(5)
	v.cursor = 3
	var got []int
	for {
		s := v.nextFree(5)
		if s < 0 {
			break
		}
		v.reserve(s)
		got = append(got, s)
	}
	want := []int{3, 4, 0, 1, 2}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestNextFreeHonoursLoweredLimit(t *testing.T) {
	v := newSlotView(10)
	for s := range 3 {
		v.markTaken(s, string(rune('a'+s)), 0)
	}
	if s := v.nextFree(3); s != -1 {
		t.Fatalf("nextFree(3) = %d with slots 0..2 taken, want -1", s)
	}
	if s := v.nextFree(4); s != 3 {
		t.Fatalf("nextFree(4) = %d, want 3", s)
	}
}

func TestJumpLandsInTheMiddleOfTheLargestGap(t *testing.T) {
	v := newSlotView(100)
	for s := range 100 {
		if s < 10 || (s >= 30 && s < 40) { // free runs: 10..29 (20) and 40..99 (60)
			v.markTaken(s, string(rune(s)), 0)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		v.jump(100, rng)
		if v.cursor < 55 || v.cursor > 85 {
			t.Fatalf("cursor %d outside the middle half of 40..99", v.cursor)
		}
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
