package catalog

import (
	"math"
	"testing"
	"time"
)

func TestPyFloat(t *testing.T) {
	t.Parallel()
	// Expected strings are CPython 3 repr() outputs.
	tests := []struct {
		in   float64
		want string
	}{
		{1700000000.123456, "1700000000.123456"},
		{1700000000.0, "1700000000.0"},
		{1700000160.000001, "1700000160.000001"},
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{0.1, "0.1"},
		{2.5, "2.5"},
		{-2.5, "-2.5"},
		{1234567.0, "1234567.0"},
		{1e15, "1000000000000000.0"},
		{1e16, "1e+16"},
		{1.5e16, "1.5e+16"},
		{123456789012345678, "1.2345678901234568e+17"},
		{0.0001, "0.0001"},
		{0.00012, "0.00012"},
		{1e-05, "1e-05"},
		{1.5e-07, "1.5e-07"},
		{1e100, "1e+100"},
		{math.Inf(1), "inf"},
		{math.NaN(), "nan"},
	}
	for _, tc := range tests {
		if got := PyFloat(tc.in); got != tc.want {
			t.Errorf("PyFloat(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPyReprStr(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"abc", `'abc'`},
		{"it's", `"it's"`},
		{`a'b"c`, `'a\'b"c'`},
		{"line\nnext\t\\", `'line\nnext\t\\'`},
		{"é", `'é'`},
		{"\x00\x7f", `'\x00\x7f'`},
		{"\u0085", `'\x85'`},
		{"", `''`},
	}
	for _, tc := range tests {
		got := pyReprStr(tc.in)
		if got != tc.want {
			t.Errorf("pyReprStr(%q) = %s, want %s", tc.in, got, tc.want)
		}
		back, err := parsePyLiteral(got)
		if err != nil || back.kind != pyStr || back.s != tc.in {
			t.Errorf("parsePyLiteral(%s) = %+v, %v; want %q", got, back, err, tc.in)
		}
	}
}

func TestParsePyLiteral(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		repr    string // "" = same as in
		wantErr bool
	}{
		{in: "None"},
		{in: "True"},
		{in: "[('tbs1', 16385, '/srv/tbs1')]"},
		{in: "{'copy_time': 1.5, 'total_time': 2}"},
		{in: "{'a': {'b': [1, 2.0, -3]}}"},
		{in: "(1,)"},
		{in: "()"},
		{in: `b'x\x00'`, repr: `'x\x00'`},
		{in: `"dq"`, repr: `'dq'`},
		{in: "[1,2 , 3,]", repr: "[1, 2, 3]"},
		{in: "1e-05", repr: "1e-05"},
		{in: "[", wantErr: true},
		{in: "{'a' 1}", wantErr: true},
		{in: "'open", wantErr: true},
		{in: "Nonesuch", wantErr: true},
		{in: "1 2", wantErr: true},
		{in: "os.system('x')", wantErr: true},
	}
	for _, tc := range tests {
		v, err := parsePyLiteral(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parsePyLiteral(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		want := tc.repr
		if want == "" {
			want = tc.in
		}
		if got := v.repr(); got != want {
			t.Errorf("repr(parse(%q)) = %q, want %q", tc.in, got, want)
		}
	}
}

func TestPyTime(t *testing.T) {
	t.Parallel()
	cet := time.FixedZone("", 3600)
	tests := []struct {
		in      string
		want    time.Time
		format  string // "" = same as in
		wantErr bool
	}{
		{in: "2014-12-22 09:25:22.561207+01:00", want: time.Date(2014, 12, 22, 9, 25, 22, 561207000, cet)},
		{in: "2014-12-22 09:25:22+01:00", want: time.Date(2014, 12, 22, 9, 25, 22, 0, cet)},
		{in: "2014-12-22 09:25:22.5+00:00", want: time.Date(2014, 12, 22, 9, 25, 22, 500000000, time.UTC), format: "2014-12-22 09:25:22.500000+00:00"},
		{in: "2014-12-22T09:25:22.561207-05:30", want: time.Date(2014, 12, 22, 9, 25, 22, 561207000, time.FixedZone("", -19800)), format: "2014-12-22 09:25:22.561207-05:30"},
		{in: "2014-12-22 09:25:22Z", want: time.Date(2014, 12, 22, 9, 25, 22, 0, time.UTC), format: "2014-12-22 09:25:22+00:00"},
		{in: "2014-12-22 09:25:22", want: time.Date(2014, 12, 22, 9, 25, 22, 0, time.UTC), format: "2014-12-22 09:25:22+00:00"},
		{in: "2014-12-22 09:25:22.1234567+01:00", want: time.Date(2014, 12, 22, 9, 25, 22, 123456000, cet), format: "2014-12-22 09:25:22.123456+01:00"},
		{in: "2014-02-30 09:25:22", wantErr: true},
		{in: "2014-12-22 24:00:00", wantErr: true},
		{in: "yesterday", wantErr: true},
		{in: "2014-12-22 09:25:22+25:00", wantErr: true},
	}
	for _, tc := range tests {
		// Naive values are read in the location given; UTC keeps the test
		// independent of the machine's zone.
		got, err := ParsePyTime(tc.in, time.UTC)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParsePyTime(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if !got.Equal(tc.want) {
			t.Errorf("ParsePyTime(%q) = %v, want %v", tc.in, got, tc.want)
		}
		want := tc.format
		if want == "" {
			want = tc.in
		}
		if f := FormatPyTime(got); f != want {
			t.Errorf("FormatPyTime(ParsePyTime(%q)) = %q, want %q", tc.in, f, want)
		}
	}
}
