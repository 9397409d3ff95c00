package checks

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

func TestAddSegment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []uint64
		want []segRun
	}{
		{"in order", []uint64{1, 2, 3}, []segRun{{1, 3}}},
		{"gap", []uint64{1, 2, 5, 6}, []segRun{{1, 2}, {5, 6}}},
		{"duplicate", []uint64{1, 2, 2, 1}, []segRun{{1, 2}}},
		{"fill merges", []uint64{1, 3, 2}, []segRun{{1, 3}}},
		{"before first", []uint64{5, 3}, []segRun{{3, 3}, {5, 5}}},
		{"extends first left", []uint64{5, 4}, []segRun{{4, 5}}},
		{"middle insert", []uint64{1, 10, 5}, []segRun{{1, 1}, {5, 5}, {10, 10}}},
		{"extend middle right", []uint64{1, 5, 10, 6}, []segRun{{1, 1}, {5, 6}, {10, 10}}},
		{"extend middle left", []uint64{1, 5, 10, 9}, []segRun{{1, 1}, {5, 5}, {9, 10}}},
		{"inside earlier run", []uint64{1, 2, 3, 10, 2}, []segRun{{1, 3}, {10, 10}}},
		{"zero", []uint64{0, 2, 1}, []segRun{{0, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var runs []segRun
			for _, no := range tt.in {
				runs = addSegment(runs, no)
			}
			if !reflect.DeepEqual(runs, tt.want) {
				t.Fatalf("runs %v, want %v", runs, tt.want)
			}
		})
	}
}

// The runs hold exactly the set of numbers added, whatever the order.
func TestAddSegmentRandom(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		var runs []segRun
		var nos []uint64
		for range r.IntN(60) {
			no := uint64(r.IntN(80))
			nos = append(nos, no)
			runs = addSegment(runs, no)
		}
		slices.Sort(nos)
		nos = slices.Compact(nos)
		var got []uint64
		for i, run := range runs {
			if run.lo > run.hi || (i > 0 && runs[i-1].hi+1 >= run.lo) {
				t.Fatalf("runs %v not sorted, disjoint and non-adjacent", runs)
			}
			for no := run.lo; no <= run.hi; no++ {
				got = append(got, no)
			}
		}
		if !slices.Equal(got, nos) {
			t.Fatalf("runs %v hold %v, want %v", runs, got, nos)
		}
	}
}
