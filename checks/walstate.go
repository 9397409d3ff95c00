package checks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

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
const walStateVersion = 1

// Time location kinds of an encoded time.Time: restored times must be
// reflect.DeepEqual to the originals, not only Equal, since summaries are
// compared as a whole.
const (
	locZero  = 0 // time.Time{}
	locLocal = 1
	locUTC   = 2
	locFixed = 3 // FixedZone(name, offset)
)

// MarshalBinary encodes the accumulator (encoding.BinaryMarshaler).
func (a *WALAccumulator) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 128+16*a.numRuns())
	b = append(b, walStateVersion)
	k := &a.key
	var flags byte
	for i, f := range []bool{k.haveLast, k.haveBegin, k.haveEnd, k.haveGapFrom} {
		if f {
			flags |= 1 << i
		}
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, k.segSize)
	for _, n := range []wal.Name{k.begin, k.end, k.gapFrom} {
		b = appendName(b, n)
	}
	if a.count < 0 || a.sinceCount < 0 {
		return nil, fmt.Errorf("%w: negative count", ErrBadWALState)
	}
	b = binary.AppendUvarint(b, uint64(a.count))
	b = binary.AppendVarint(b, a.totalSize)
	b = appendTime(b, a.lastTime)
	b = binary.AppendUvarint(b, uint64(a.sinceCount))
	b = binary.AppendVarint(b, a.sinceSize)
	b = appendTime(b, a.lastSinceTime)

	tlis := make([]uint32, 0, len(a.runs))
	for tli, runs := range a.runs {
		if len(runs) > 0 {
			tlis = append(tlis, tli)
		}
	}
	slices.Sort(tlis) // deterministic output
	b = binary.AppendUvarint(b, uint64(len(tlis)))
	for _, tli := range tlis {
		runs := a.runs[tli]
		b = binary.AppendUvarint(b, uint64(tli))
		b = binary.AppendUvarint(b, uint64(len(runs)))
		// Runs are sorted and separated by at least one missing
		// segment: store the gap before each run (minus that one) and
		// its length, which keeps the common small numbers small.
		var next uint64
		for i, r := range runs {
			if r.hi < r.lo || (i > 0 && r.lo < next) {
				return nil, fmt.Errorf("%w: timeline %d: runs not sorted", ErrBadWALState, tli)
			}
			b = binary.AppendUvarint(b, r.lo-next)
			b = binary.AppendUvarint(b, r.hi-r.lo)
			next = r.hi + 2
		}
	}
	return b, nil
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
	d := walDecoder{b: data}
	var out WALAccumulator
	if v := d.byte(); d.err == nil && v != walStateVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrBadWALState, v, walStateVersion)
	}
	flags := d.byte()
	if flags&^0xf != 0 {
		d.fail("unknown key flags")
	}
	k := &out.key
	k.haveLast, k.haveBegin, k.haveEnd, k.haveGapFrom = flags&1 != 0, flags&2 != 0, flags&4 != 0, flags&8 != 0
	k.segSize = d.uvarint()
	if d.err == nil && wal.ValidateSegmentSize(k.segSize) != nil {
		d.fail("bad segment size")
	}
	k.begin, k.end, k.gapFrom = d.name(), d.name(), d.name()
	// keyOf leaves a name zero when it is absent (and has no begin or
	// end without a last backup): anything else would never match.
	for _, c := range []struct {
		have bool
		n    wal.Name
	}{{k.haveBegin, k.begin}, {k.haveEnd, k.end}, {k.haveGapFrom, k.gapFrom}} {
		if !c.have && c.n != (wal.Name{}) {
			d.fail("name set without its flag")
		}
	}
	if !k.haveLast && (k.haveBegin || k.haveEnd) {
		d.fail("backup bounds without a backup")
	}
	out.count = d.int()
	out.totalSize = d.varint()
	out.lastTime = d.time()
	out.sinceCount = d.int()
	out.sinceSize = d.varint()
	out.lastSinceTime = d.time()
	if d.err == nil && out.sinceCount > out.count {
		d.fail("more WAL since the backup than in total")
	}
	ntli := d.count(2)
	out.runs = make(map[uint32][]segRun, ntli)
	prevTLI := int64(-1)
	for range ntli {
		tli := d.uvarint()
		if d.err == nil && (tli > math.MaxUint32 || int64(tli) <= prevTLI) {
			d.fail("timelines not sorted")
		}
		prevTLI = int64(tli)
		nruns := d.count(2)
		if d.err == nil && nruns == 0 {
			d.fail("empty timeline")
		}
		runs := make([]segRun, 0, nruns)
		var next uint64
		for i := range nruns {
			gap, length := d.uvarint(), d.uvarint()
			lo := next + gap
			hi := lo + length
			if d.err == nil && ((i > 0 && next == 0) || lo < next || hi < lo) {
				d.fail("runs overflow")
			}
			if d.err != nil {
				break
			}
			runs = append(runs, segRun{lo, hi})
			next = hi + 2
			if next < hi { // hi is the last possible segment number
				if i+1 < nruns {
					d.fail("runs overflow")
				}
				next = 0
			}
		}
		if d.err != nil {
			break
		}
		out.runs[uint32(tli)] = runs
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	*a = out
	return nil
}

func appendName(b []byte, n wal.Name) []byte {
	b = binary.AppendUvarint(b, uint64(n.Kind))
	b = binary.AppendUvarint(b, uint64(n.TLI))
	b = binary.AppendUvarint(b, uint64(n.Log))
	b = binary.AppendUvarint(b, uint64(n.Seg))
	return binary.AppendUvarint(b, uint64(n.Offset))
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() && t == (time.Time{}) {
		return append(b, locZero)
	}
	switch t.Location() {
	case time.Local:
		b = append(b, locLocal)
	case time.UTC:
		b = append(b, locUTC)
	default:
		name, off := t.Zone()
		b = append(b, locFixed)
		b = binary.AppendVarint(b, int64(off))
		b = binary.AppendUvarint(b, uint64(len(name)))
		b = append(b, name...)
	}
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// walDecoder reads the encoding; the first error sticks and later reads
// return zero values, so callers check once.
type walDecoder struct {
	b   []byte
	err error
}

func (d *walDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadWALState, what)
	}
}

func (d *walDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *walDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *walDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated or bad number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *walDecoder) int() int {
	v := d.uvarint()
	if v > math.MaxInt {
		d.fail("count out of range")
		return 0
	}
	return int(v)
}

// count reads a number of elements each taking at least min bytes: a
// count the remaining data cannot hold is an error before anything is
// allocated for it.
func (d *walDecoder) count(min int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(len(d.b)/min) {
		d.fail("count exceeds data")
		return 0
	}
	return int(v)
}

func (d *walDecoder) u32() uint32 {
	v := d.uvarint()
	if v > math.MaxUint32 {
		d.fail("number out of range")
		return 0
	}
	return uint32(v)
}

func (d *walDecoder) name() wal.Name {
	kind := d.uvarint()
	if d.err == nil && kind > uint64(wal.KindHistory) {
		d.fail("bad WAL name kind")
	}
	return wal.Name{Kind: wal.Kind(kind), TLI: d.u32(), Log: d.u32(), Seg: d.u32(), Offset: d.u32()}
}

func (d *walDecoder) time() time.Time {
	kind := d.byte()
	var loc *time.Location
	switch kind {
	case locZero:
		return time.Time{}
	case locLocal:
		loc = time.Local
	case locUTC:
		loc = time.UTC
	case locFixed:
		off := d.varint()
		n := d.count(1)
		if d.err == nil && (off < -24*3600 || off > 24*3600) {
			d.fail("bad zone offset")
		}
		if d.err != nil {
			return time.Time{}
		}
		loc = time.FixedZone(string(d.b[:n]), int(off))
		d.b = d.b[n:]
	default:
		d.fail("bad time kind")
		return time.Time{}
	}
	sec, nsec := d.varint(), d.uvarint()
	if d.err == nil && nsec >= 1e9 {
		d.fail("bad nanoseconds")
	}
	if d.err != nil {
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if loc == time.Local {
		return t
	}
	return t.In(loc)
}
