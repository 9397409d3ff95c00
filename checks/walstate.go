package checks

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cellar-backup/cellar/internal/binenc"
	"github.com/cellar-backup/cellar/wal"
)

// A WALAccumulator can be saved and restored so that a restarted process
// resumes the running xlog.db summary where the previous one stopped
// instead of folding every line again (checktarget persists it next to
// the catalog). The encoding is compact and versioned; restoring checks
// every invariant Add relies on, so a damaged snapshot is an error, never
// a wrong summary or a panic.

// ErrBadWALState is matched (errors.Is) by every UnmarshalBinary error.
var ErrBadWALState = errors.New("invalid WAL accumulator state")

// walStateVersion changes whenever the encoding or the fields of
// WALAccumulator/walKey change (a test counts the fields).
const walStateVersion = 2

// MarshalBinary encodes the accumulator (encoding.BinaryMarshaler).
func (a *WALAccumulator) MarshalBinary() ([]byte, error) {
	e := binenc.Encoder{B: make([]byte, 0, 128+16*a.numRuns())}
	e.Byte(walStateVersion)
	k := &a.key
	var flags byte
	for i, f := range []bool{k.haveLast, k.haveBegin, k.haveEnd, k.haveGapFrom} {
		if f {
			flags |= 1 << i
		}
	}
	e.Byte(flags)
	e.Uvarint(k.segSize)
	for _, n := range []wal.Name{k.begin, k.end, k.gapFrom} {
		encodeName(&e, n)
	}
	if a.count < 0 || a.sinceCount < 0 {
		return nil, fmt.Errorf("%w: negative count", ErrBadWALState)
	}
	e.Uvarint(uint64(a.count))
	e.Varint(a.totalSize)
	e.Time(a.lastTime)
	e.Uvarint(uint64(a.sinceCount))
	e.Varint(a.sinceSize)
	e.Time(a.lastSinceTime)

	tlis := make([]uint32, 0, len(a.runs))
	for tli, runs := range a.runs {
		if len(runs) > 0 {
			tlis = append(tlis, tli)
		}
	}
	slices.Sort(tlis) // deterministic output
	e.Uvarint(uint64(len(tlis)))
	for _, tli := range tlis {
		runs := a.runs[tli]
		e.Uvarint(uint64(tli))
		e.Uvarint(uint64(len(runs)))
		// Runs are sorted and separated by at least one missing
		// segment: store the gap before each run (minus that one) and
		// its length, which keeps the common small numbers small.
		var next uint64
		for i, r := range runs {
			if r.hi < r.lo || (i > 0 && r.lo < next) {
				return nil, fmt.Errorf("%w: timeline %d: runs not sorted", ErrBadWALState, tli)
			}
			e.Uvarint(r.lo - next)
			e.Uvarint(r.hi - r.lo)
			next = r.hi + 2
		}
	}
	return e.B, nil
}

func (a *WALAccumulator) numRuns() int {
	n := 0
	for _, r := range a.runs {
		n += len(r)
	}
	return n
}

// UnmarshalBinary replaces a with the accumulator encoded in data
// (encoding.BinaryUnmarshaler). On error a is left unchanged.
func (a *WALAccumulator) UnmarshalBinary(data []byte) error {
	d := walDecoder{binenc.NewDecoder(string(data))}
	var out WALAccumulator
	if v := d.Byte(); d.Err() == nil && v != walStateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrBadWALState, v, walStateVersion)
	}
	flags := d.Byte()
	if flags&^0xf != 0 {
		d.Fail("unknown key flags")
	}
	k := &out.key
	k.haveLast, k.haveBegin, k.haveEnd, k.haveGapFrom = flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
	k.segSize = d.Uvarint()
	if d.Err() == nil && wal.ValidateSegmentSize(k.segSize) != nil {
		d.Fail("bad segment size")
	}
	k.begin, k.end, k.gapFrom = d.name(), d.name(), d.name()
	// keyOf leaves a name zero when it is absent (and has no begin or
	// end without a last backup): anything else would never match.
	for _, c := range []struct {
		have bool
		n    wal.Name
	}{{k.haveBegin, k.begin}, {k.haveEnd, k.end}, {k.haveGapFrom, k.gapFrom}} {
		if !c.have && c.n != (wal.Name{}) {
			d.Fail("name set without its flag")
		}
	}
	if !k.haveLast && (k.haveBegin || k.haveEnd) {
		d.Fail("backup bounds without a backup")
	}
	out.count = d.Int()
	out.totalSize = d.Varint()
	out.lastTime = d.Time()
	out.sinceCount = d.Int()
	out.sinceSize = d.Varint()
	out.lastSinceTime = d.Time()
	if d.Err() == nil && out.sinceCount > out.count {
		d.Fail("more WAL since the backup than in total")
	}
	ntli := d.Count(2)
	out.runs = make(map[uint32][]segRun, ntli)
	prevTLI := int64(-1)
	for range ntli {
		tli := d.Uvarint()
		if d.Err() == nil && (tli > math.MaxUint32 || int64(tli) <= prevTLI) {
			d.Fail("timelines not sorted")
		}
		prevTLI = int64(tli)
		nruns := d.Count(2)
		if d.Err() == nil && nruns == 0 {
			d.Fail("empty timeline")
		}
		runs := make([]segRun, 0, nruns)
		var next uint64
		for i := range nruns {
			gap, length := d.Uvarint(), d.Uvarint()
			lo := next + gap
			hi := lo + length
			if d.Err() == nil && ((i > 0 && next == 0) || lo < next || hi < lo) {
				d.Fail("runs overflow")
			}
			if d.Err() != nil {
				break
			}
			runs = append(runs, segRun{lo, hi})
			next = hi + 2
			if next < hi { // hi is the last possible segment number
				if i+1 < nruns {
					d.Fail("runs overflow")
				}
				next = 0
			}
		}
		if d.Err() != nil {
			break
		}
		out.runs[uint32(tli)] = runs
	}
	if d.Err() == nil && d.Left() != 0 {
		d.Fail("trailing bytes")
	}
	if err := d.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrBadWALState, err)
	}
	*a = out
	return nil
}

func encodeName(e *binenc.Encoder, n wal.Name) {
	e.Uvarint(uint64(n.Kind))
	e.Uvarint(uint64(n.TLI))
	e.Uvarint(uint64(n.Log))
	e.Uvarint(uint64(n.Seg))
	e.Uvarint(uint64(n.Offset))
}

// walDecoder adds WAL names to the shared decoder.
type walDecoder struct{ *binenc.Decoder }

func (d walDecoder) name() wal.Name {
	kind := d.Uvarint()
	if d.Err() == nil && kind > uint64(wal.KindHistory) {
		d.Fail("bad WAL name kind")
	}
	return wal.Name{Kind: wal.Kind(kind), TLI: d.U32(), Log: d.U32(), Seg: d.U32(), Offset: d.U32()}
}
