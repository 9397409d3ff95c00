package binenc

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	times := []time.Time{
		{},
		time.Date(2025, 12, 2, 10, 30, 0, 123456789, time.UTC),
		time.Date(2025, 12, 2, 0, 0, 0, 0, time.Local),
		time.Date(2025, 6, 1, 1, 2, 3, 4, time.FixedZone("CEST", 2*3600)),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -9*3600-1800)),
	}
	var e Encoder
	e.Byte(7)
	e.Uvarint(math.MaxUint64)
	e.Varint(math.MinInt64)
	e.Varint(-1)
	e.Uvarint(math.MaxUint32)
	e.Str("")
	e.Str("backup ünïcode")
	e.Bytes([]byte{0, '\n', 0xff})
	for _, tm := range times {
		e.Time(tm)
	}
	d := NewDecoder(string(e.B))
	got := []any{d.Byte(), d.Uvarint(), d.Varint(), d.Varint(), d.U32(), d.Str(), d.Str(), d.Str()}
	want := []any{byte(7), uint64(math.MaxUint64), int64(math.MinInt64), int64(-1), uint32(math.MaxUint32), "", "backup ünïcode", "\x00\n\xff"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("values = %#v, want %#v", got, want)
	}
	for _, tm := range times {
		// DeepEqual, not Equal: the location must come back too.
		if g := d.Time(); !reflect.DeepEqual(g, tm) {
			t.Errorf("time %v came back as %v", tm, g)
		}
	}
	if d.Err() != nil || d.Left() != 0 {
		t.Errorf("err %v, %d bytes left", d.Err(), d.Left())
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	big := Encoder{}
	big.Uvarint(1 << 40)
	tests := []struct {
		name  string
		input string
		read  func(d *Decoder)
		want  string
	}{
		{"empty byte", "", func(d *Decoder) { d.Byte() }, "truncated"},
		{"truncated varint", "\x80\x80", func(d *Decoder) { d.Uvarint() }, "truncated or bad number"},
		{"overlong varint", strings.Repeat("\xff", 10) + "\x01", func(d *Decoder) { d.Uvarint() }, "truncated or bad number"},
		{"count beyond data", string(big.B), func(d *Decoder) { d.Count(1) }, "count exceeds data"},
		{"string beyond data", "\x05abc", func(d *Decoder) { d.Str() }, "count exceeds data"},
		{"u32 overflow", "\x80\x80\x80\x80\x10", func(d *Decoder) { d.U32() }, "number out of range"},
		{"bad time kind", "\x09", func(d *Decoder) { d.Time() }, "bad time kind"},
		{"bad nanoseconds", "\x02\x00\x80\x94\xeb\xdc\x03", func(d *Decoder) { d.Time() }, "bad nanoseconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := NewDecoder(tt.input)
			tt.read(d)
			if d.Err() == nil || d.Err().Error() != tt.want {
				t.Fatalf("err = %v, want %q", d.Err(), tt.want)
			}
			// The first error sticks; later reads return zero values.
			if d.Byte() != 0 || d.Uvarint() != 0 || d.Str() != "" || d.Err().Error() != tt.want {
				t.Errorf("reads after the error: err %v", d.Err())
			}
		})
	}
}

// A time.Local value is only the same instant for the zone it was saved
// in: an offset that differs now is refused.
func TestLocalZoneChanged(t *testing.T) {
	t.Parallel()
	tm := time.Date(2025, 12, 2, 0, 0, 0, 0, time.Local)
	_, off := tm.Zone()
	var e Encoder
	e.Byte(locLocal)
	e.Varint(int64(off + 1800))
	e.Varint(tm.Unix())
	e.Uvarint(0)
	d := NewDecoder(string(e.B))
	if d.Time(); d.Err() == nil || !strings.Contains(d.Err().Error(), "local time zone changed") {
		t.Fatalf("time saved under another local offset: err %v", d.Err())
	}
}

func FuzzDecoder(f *testing.F) {
	var e Encoder
	e.Str("x")
	e.Time(time.Date(2025, 6, 1, 1, 2, 3, 4, time.FixedZone("CEST", 2*3600)))
	e.Varint(-5)
	f.Add(string(e.B))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		d := NewDecoder(s)
		for d.Err() == nil && d.Left() > 0 {
			switch d.Byte() % 5 {
			case 0:
				d.Uvarint()
			case 1:
				d.Varint()
			case 2:
				d.Str()
			case 3:
				d.Time()
			case 4:
				d.Count(3)
			}
		}
		if d.Left() < 0 {
			t.Fatalf("read past the end: %d left", d.Left())
		}
	})
}
