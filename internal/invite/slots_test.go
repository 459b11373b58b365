package invite

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestTallyPacksWithoutCarry(t *testing.T) {
	var sum int64
	for i := range MaxUsesLimit {
		sum += TallyOf(SlotID("c", i), "n", i%3 == 0)
	}
	got := Tally(sum)
	if got.Docs() != MaxUsesLimit || got.Closed() != 334 || got.Used() != MaxUsesLimit-334 {
		t.Fatalf("tally of 1000 docs, 334 closed: docs %d closed %d used %d", got.Docs(), got.Closed(), got.Used())
	}
	if TallyOf("c#1", "a", false) == TallyOf("c#1", "b", false) {
		t.Fatal("two redemptions of one slot should differ in their print")
	}
}

func TestPlanSlots(t *testing.T) {
	holder := func(slot int) Occupant { return Occupant{Slot: slot, Email: "p" + SlotID("", slot)} }
	closed := func(slot int) Occupant { return Occupant{Slot: slot, Closed: true} }
	seq := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	tests := []struct {
		name           string
		maxUses, space int
		occ            []Occupant
		close, reopen  []int
	}{
		{"never lowered: nothing to do", 5, 5, []Occupant{holder(0), holder(3)}, nil, nil},
		{"lowered: close every free slot above the limit first", 2, 5, []Occupant{holder(3)}, []int{2, 4}, nil},
		{"then one closed below per holder above", 3, 5, []Occupant{holder(3), holder(4)}, []int{1, 2}, nil},
		{"holders below count too: only free slots can close", 3, 5, []Occupant{holder(0), holder(1), holder(3), holder(4)}, []int{2}, nil},
		{"balanced", 3, 5, []Occupant{holder(0), closed(2), holder(3), closed(4)}, nil, nil},
		{"a holder above revoked: reopen one", 3, 5, []Occupant{closed(1), closed(2), holder(3), closed(4)}, nil, []int{1}},
		{"raised back: reopen all", 5, 5, []Occupant{closed(1), closed(2), holder(3), closed(4)}, nil, []int{1, 2, 4}},
		{"raised above the old space: the new slots are free", 8, 5, []Occupant{closed(4)}, nil, []int{4}},
		{"lowered below usage: everything closes", 2, 4, []Occupant{holder(1), holder(2), holder(3)}, []int{0}, nil},
		{"nothing reopens while slots above the limit are open", 2, 5, []Occupant{closed(0), closed(1)}, seq(2, 5), nil},
		{"holders beyond the recorded space still count", 2, 2, []Occupant{holder(0), holder(3)}, []int{2}, nil},
		{"a lost space is widened by what is stored", 10, 10, []Occupant{holder(3), holder(50), closed(8), closed(9)}, seq(10, 50), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := PlanSlots(tt.maxUses, tt.space, tt.occ)
			if !slices.Equal(c, tt.close) || !slices.Equal(r, tt.reopen) {
				t.Fatalf("PlanSlots = close %v reopen %v, want %v %v", c, r, tt.close, tt.reopen)
			}
		})
	}
}

// TestPlanSlotsExact plays the operator against replicas that keep inserting
// anywhere below the old limit, in random order: once the plan is empty,
// the free slots below the limit are exactly max(0, maxUses - holders).
func TestPlanSlotsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 500 {
		space := 1 + rng.IntN(60)
		maxUses := 1 + rng.IntN(space+5)
		slots := map[int]Occupant{}
		for i := range space {
			if rng.IntN(3) == 0 {
				slots[i] = holder(i)
			}
		}
		converged := false
		for step := 0; step < 200 && !converged; step++ {
			if rng.IntN(2) == 0 { // a stale replica takes any free slot of the old space
				if s := rng.IntN(space); slots[s] == (Occupant{}) {
					slots[s] = holder(s)
				}
				continue
			}
			occ := make([]Occupant, 0, len(slots))
			for _, o := range slots {
				occ = append(occ, o)
			}
			c, r := PlanSlots(maxUses, space, occ)
			if len(c) == 0 && len(r) == 0 {
				converged = true
				break
			}
			for _, s := range c {
				if slots[s] == (Occupant{}) {
					slots[s] = Occupant{Slot: s, Closed: true}
				}
			}
			for _, s := range r {
				delete(slots, s)
			}
		}
		holders, free := 0, 0
		for i := range space {
			switch o := slots[i]; {
			case o == (Occupant{}) && i < maxUses:
				free++
			case o != (Occupant{}) && !o.Closed:
				holders++
			}
		}
		for i := space; i < maxUses; i++ {
			free++
		}
		if holders+free > max(maxUses, holders) || converged && free != max(0, maxUses-holders) {
			t.Fatalf("round %d (converged %v): maxUses %d space %d: %d holders and %d free slots", round, converged, maxUses, space, holders, free)
		}
	}
}

func holder(slot int) Occupant { return Occupant{Slot: slot, Email: "p" + SlotID("", slot)} }
