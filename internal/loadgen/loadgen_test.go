package loadgen

import (
	"testing"
	"time"
)

func TestCombineCountsEveryRequestOverTheSumOfTheDurations(t *testing.T) {
	a := outcomes(o("c", "a@x.io", 201), o("c", "b@x.io", 410))
	a.Duration = time.Second
	b := outcomes(o("c", "c@x.io", 410))
	b.Duration = 2 * time.Second
	all := Combine(a, b)
	if got := all.RPS(); got != 1 {
		t.Errorf("RPS %v, want 1 (3 requests in 3 s)", got)
	}
	if all.Statuses[410] != 2 || all.Statuses[201] != 1 || len(all.Answered) != 1 || len(all.Latencies) != 3 {
		t.Errorf("statuses %v, answered %v, %d latencies", all.Statuses, all.Answered, len(all.Latencies))
	}
}
