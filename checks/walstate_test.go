package checks

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

func segWAL(tli uint32, seg uint32, at int64) WAL {
	return WAL{Name: wal.Name{TLI: tli, Seg: seg}.String(), Size: int64(seg) * 10, Time: time.Unix(at, 500)}
}

// accumulators in the shapes a catalog produces: no backup, a backup
// with fixed-zone times, gaps on several timelines, odd entries.
func stateCases() map[string]struct {
	backups []Backup
	wals    []WAL
} {
	cet := time.FixedZone("", 3600)
	odd := time.FixedZone("XYZ", 5400)
	bk := []Backup{
		{ID: "a", Status: StatusFailed, BeginWAL: wal.Name{TLI: 1, Seg: 1}.String()},
		{ID: "b", Status: StatusDone, BeginWAL: wal.Name{TLI: 1, Seg: 3}.String(), EndWAL: wal.Name{TLI: 1, Seg: 4}.String(),
			BeginTime: time.Date(2026, 1, 1, 0, 0, 0, 0, cet), WALSegmentSize: 1 << 24},
		{ID: "c", Status: StatusWaitingForWALs, BeginWAL: wal.Name{TLI: 2, Seg: 9}.String(), EndWAL: "garbage", WALSegmentSize: 1 << 20},
	}
	var many []WAL
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		many = append(many, segWAL(uint32(1+r.IntN(3)), uint32(r.IntN(5000)), int64(1_790_000_000+i)))
	}
	return map[string]struct {
		backups []Backup
		wals    []WAL
	}{
		"empty":     {},
		"no backup": {nil, []WAL{segWAL(1, 1, 10), segWAL(1, 2, 20), segWAL(1, 7, 5)}},
		"backups and odd entries": {bk, []WAL{
			segWAL(1, 1, 10), segWAL(1, 5, 20), segWAL(2, 10, 30), segWAL(2, 12, 40),
			{Name: "00000002.history", Size: 3, Time: time.Date(2026, 1, 2, 0, 0, 0, 0, odd)},
			{Name: "not-a-wal", Size: 1, Time: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)},
			{Name: wal.Name{Kind: wal.KindPartial, TLI: 2, Seg: 13}.String(), Size: 7},
		}},
		"many gaps": {bk[:2], many},
		"top segment": {nil, []WAL{
			{Name: wal.Name{TLI: 1, Log: math.MaxUint32, Seg: 255}.String(), Time: time.Unix(1, 0)},
			{Name: wal.Name{TLI: 1, Log: math.MaxUint32, Seg: 253}.String(), Time: time.Unix(1, 0)},
			{Name: wal.Name{TLI: 1, Seg: 0}.String(), Time: time.Unix(1, 0)},
		}},
	}
}

// A restored accumulator equals the original, summarises the same, and
// keeps accumulating the same.
func TestWALAccumulatorRoundTrip(t *testing.T) {
	t.Parallel()
	for name, tc := range stateCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := NewWALAccumulator(tc.backups)
			half := len(tc.wals) / 2
			for _, w := range tc.wals[:half] {
				a.Add(w)
			}
			data, err := a.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var b WALAccumulator
			if err := b.UnmarshalBinary(data); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !reflect.DeepEqual(&b, a) {
				t.Fatalf("restored\n%+v\nwant\n%+v", &b, a)
			}
			if !b.Matches(tc.backups) {
				t.Fatal("restored accumulator does not match its backups")
			}
			for _, w := range tc.wals[half:] {
				a.Add(w)
				b.Add(w)
			}
			if got, want := b.Summary(tc.backups), a.Summary(tc.backups); !reflect.DeepEqual(got, want) {
				t.Fatalf("summary after more WAL\n%+v\nwant\n%+v", got, want)
			}
			again, err := b.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			final, _ := a.MarshalBinary()
			if string(again) != string(final) {
				t.Fatal("encoding is not deterministic")
			}
		})
	}
}

func TestWALAccumulatorUnmarshalErrors(t *testing.T) {
	t.Parallel()
	a := NewWALAccumulator(stateCases()["backups and odd entries"].backups)
	for _, w := range stateCases()["backups and odd entries"].wals {
		a.Add(w)
	}
	good, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	withRuns := func(runs map[uint32][]segRun) []byte {
		c := *a
		c.runs = runs
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Hand-built run encodings the marshaller refuses to produce.
	rawRuns := func(tail ...byte) []byte {
		b := withRuns(nil)
		return append(b[:len(b)-1], tail...)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"other version", append([]byte{walStateVersion + 1}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"unknown flag", append([]byte{walStateVersion, 0x10}, good[2:]...)},
		{"bad segment size", func() []byte {
			c := *a
			c.key.segSize = 7
			b, _ := c.MarshalBinary()
			return b
		}()},
		{"empty timeline", rawRuns(1, 1, 0)},
		{"timelines not sorted", rawRuns(2, 2, 1, 0, 0, 1, 1, 0, 0)},
		{"count exceeds data", rawRuns(1, 1, 100)},
		{"run overflow", rawRuns(1, 1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0)},
		{"huge timeline", rawRuns(1, 0xff, 0xff, 0xff, 0xff, 0x1f, 1, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := NewWALAccumulator(nil)
			before := *b
			err := b.UnmarshalBinary(tt.data)
			if !errors.Is(err, ErrBadWALState) {
				t.Fatalf("UnmarshalBinary: %v, want ErrBadWALState", err)
			}
			if !reflect.DeepEqual(*b, before) {
				t.Fatal("failed UnmarshalBinary changed the accumulator")
			}
		})
	}
	// The hand-built helper itself yields a valid encoding.
	var ok WALAccumulator
	if err := ok.UnmarshalBinary(rawRuns(1, 1, 1, 5, 2)); err != nil {
		t.Fatalf("valid hand-built runs: %v", err)
	}
	if got := ok.runs[1]; !reflect.DeepEqual(got, []segRun{{5, 7}}) {
		t.Fatalf("hand-built runs %v", got)
	}
}

// The encoding covers every field: a new field must be added to
// MarshalBinary/UnmarshalBinary (and walStateVersion bumped) before this
// count is updated, or restored summaries would silently lose it.
func TestWALAccumulatorFieldsEncoded(t *testing.T) {
	t.Parallel()
	if n := reflect.TypeFor[WALAccumulator]().NumField(); n != 8 {
		t.Errorf("WALAccumulator has %d fields; walstate.go encodes 8", n)
	}
	if n := reflect.TypeFor[walKey]().NumField(); n != 8 {
		t.Errorf("walKey has %d fields; walstate.go encodes 8", n)
	}
	if n := reflect.TypeFor[wal.Name]().NumField(); n != 5 {
		t.Errorf("wal.Name has %d fields; walstate.go encodes 5", n)
	}
}

func FuzzWALAccumulatorUnmarshal(f *testing.F) {
	for _, tc := range stateCases() {
		a := NewWALAccumulator(tc.backups)
		for _, w := range tc.wals[:min(len(tc.wals), 50)] {
			a.Add(w)
		}
		data, err := a.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var a WALAccumulator
		if err := a.UnmarshalBinary(data); err != nil {
			return
		}
		// Whatever was accepted holds the invariants Add and Summary
		// rely on, and survives a round trip.
		for tli, runs := range a.runs {
			for i, r := range runs {
				if r.hi < r.lo || (i > 0 && runs[i-1].hi+1 >= r.lo) {
					t.Fatalf("timeline %d: accepted bad runs %v", tli, runs)
				}
			}
		}
		a.Add(segWAL(1, 7, 1))
		_ = a.Summary(nil)
		again, err := a.MarshalBinary()
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		var b WALAccumulator
		if err := b.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(&a, &b) {
			t.Fatalf("round trip of an accepted state: %v", err)
		}
	})
}
