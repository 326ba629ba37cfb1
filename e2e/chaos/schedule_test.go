//go:build chaos

package chaos_test

import (
	"reflect"
	"testing"
)

// TestSchedule: a seed always draws the same faults, every round of four
// iterations injects each kind once, and each fault lands on a step and
// point where it can happen.
func TestSchedule(t *testing.T) {
	for _, seed := range []uint64{0, 1, 42, 1 << 40} {
		a, b := schedule(seed, 12), schedule(seed, 12)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: two draws differ:\n%v\n%v", seed, a, b)
		}
		for round := 0; round < 3; round++ {
			seen := map[string]bool{}
			for _, f := range a[4*round : 4*round+4] {
				seen[f.kind] = true
			}
			if len(seen) != 4 {
				t.Fatalf("seed %d round %d: kinds %v", seed, round, seen)
			}
		}
		for _, f := range a {
			if isBuildStep(f.step) {
				lo := 1
				if f.kind == faultAgent && f.step == stepCreate {
					lo = 4
				}
				if f.line < lo || f.line > buildLines[f.step] {
					t.Fatalf("seed %d: %s: line out of range", seed, f)
				}
			}
			if f.kind == faultProvisioner && !isBuildStep(f.step) {
				t.Fatalf("seed %d: %s: a daemon kill outside a build", seed, f)
			}
			if f.kind == faultAgent && (f.step == stepStop || f.step == stepDelete) {
				t.Fatalf("seed %d: %s: no agent runs then", seed, f)
			}
		}
	}
	if reflect.DeepEqual(schedule(1, 12), schedule(2, 12)) {
		t.Fatal("seeds 1 and 2 draw the same schedule")
	}
}
