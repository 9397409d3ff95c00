// Package binenc is the compact binary encoding of Cellar's own state
// files (the exporter's probe state and the WAL summary inside it):
// varints, length-prefixed strings and times that decode
// reflect.DeepEqual to the originals. A Decoder's first error sticks and
// later reads return zero values, so callers check once; a count the
// remaining input cannot hold is refused before anything is allocated.
package binenc

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// Time location kinds.
const (
	locZero  = 0 // time.Time{}
	locLocal = 1 // time.Local, with the zone offset it had when encoded
	locUTC   = 2
	locFixed = 3 // FixedZone(name, offset)
)

// Encoder appends to B.
type Encoder struct{ B []byte }

func (e *Encoder) Byte(c byte)      { e.B = append(e.B, c) }
func (e *Encoder) Uvarint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }
func (e *Encoder) Varint(v int64)   { e.B = binary.AppendVarint(e.B, v) }

// Str writes s with its length.
func (e *Encoder) Str(s string) {
	e.Uvarint(uint64(len(s)))
	e.B = append(e.B, s...)
}

// Bytes writes p with its length (read back with Decoder.Str).
func (e *Encoder) Bytes(p []byte) {
	e.Uvarint(uint64(len(p)))
	e.B = append(e.B, p...)
}

// Time writes t with its location. A time.Local time keeps the zone
// offset it had, so that decoding can tell when the local zone changed.
func (e *Encoder) Time(t time.Time) {
	if t == (time.Time{}) {
		e.Byte(locZero)
		return
	}
	switch t.Location() {
	case time.Local:
		_, off := t.Zone()
		e.Byte(locLocal)
		e.Varint(int64(off))
	case time.UTC:
		e.Byte(locUTC)
	default:
		name, off := t.Zone()
		e.Byte(locFixed)
		e.Varint(int64(off))
		e.Str(name)
	}
	e.Varint(t.Unix())
	e.Uvarint(uint64(t.Nanosecond()))
}

// Decoder reads what an Encoder wrote, from a string: Str results are
// cut from it without copying.
type Decoder struct {
	s   string
	pos int // reading by index: reslicing s would cost a GC write barrier per field
	err error
}

// NewDecoder reads s.
func NewDecoder(s string) *Decoder { return &Decoder{s: s} }

// Err is the first error, nil if every read so far succeeded.
func (d *Decoder) Err() error { return d.err }

// Fail records what is wrong unless an error is already recorded.
func (d *Decoder) Fail(what string) {
	if d.err == nil {
		d.err = errors.New(what)
	}
}

// Left is the number of unread bytes.
func (d *Decoder) Left() int { return len(d.s) - d.pos }

func (d *Decoder) Byte() byte {
	if d.err != nil {
		return 0
	}
	if d.pos >= len(d.s) {
		d.Fail("truncated")
		return 0
	}
	c := d.s[d.pos]
	d.pos++
	return c
}

// Uvarint is binary.Uvarint on the string (converting would copy).
func (d *Decoder) Uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var x uint64
	var s uint
	for i := 0; d.pos+i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[d.pos+i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			d.pos += i + 1
			return x | uint64(c)<<s
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	d.Fail("truncated or bad number")
	return 0
}

// Varint is binary.Varint (zig-zag) on the string.
func (d *Decoder) Varint() int64 {
	ux := d.Uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

// Int reads a non-negative number that fits an int.
func (d *Decoder) Int() int {
	v := d.Uvarint()
	if v > math.MaxInt {
		d.Fail("number out of range")
		return 0
	}
	return int(v)
}

// U32 reads a number that fits 32 bits.
func (d *Decoder) U32() uint32 {
	v := d.Uvarint()
	if v > math.MaxUint32 {
		d.Fail("number out of range")
		return 0
	}
	return uint32(v)
}

// Count reads a number of elements each taking at least min bytes, and
// refuses counts the remaining input cannot hold.
func (d *Decoder) Count(min int) int {
	v := d.Uvarint()
	if d.err == nil && v > uint64(d.Left()/min) {
		d.Fail("count exceeds data")
		return 0
	}
	return int(v)
}

// Str reads what Encoder.Str or Encoder.Bytes wrote.
func (d *Decoder) Str() string {
	n := d.Count(1)
	if d.err != nil {
		return ""
	}
	s := d.s[d.pos : d.pos+n]
	d.pos += n
	return s
}

// Time reads what Encoder.Time wrote. A time.Local time whose zone offset
// differs now from when it was encoded is an error: the local zone
// changed, so the instant a fresh parse of the same text gives changed too.
func (d *Decoder) Time() time.Time {
	var loc *time.Location
	var localOff int64
	switch kind := d.Byte(); kind {
	case locZero:
		return time.Time{}
	case locLocal:
		loc = time.Local
		localOff = d.Varint()
	case locUTC:
		loc = time.UTC
	case locFixed:
		off := d.Varint()
		name := d.Str()
		if d.err == nil && (off < -24*3600 || off > 24*3600) {
			d.Fail("bad zone offset")
		}
		if d.err != nil {
			return time.Time{}
		}
		loc = time.FixedZone(name, int(off))
	default:
		d.Fail("bad time kind")
		return time.Time{}
	}
	sec, nsec := d.Varint(), d.Uvarint()
	if d.err == nil && nsec >= 1e9 {
		d.Fail("bad nanoseconds")
	}
	if d.err != nil {
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if loc != time.Local {
		return t.In(loc)
	}
	if _, off := t.Zone(); int64(off) != localOff {
		d.Fail("local time zone changed since the save")
		return time.Time{}
	}
	return t
}
