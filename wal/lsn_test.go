package wal_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/wal"
)

func TestParseLSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want wal.LSN
		text string // canonical String()
	}{
		{"0/0", 0, "0/0"},
		{"16/B374D848", 0x16_B374D848, "16/B374D848"},
		{"16/b374d848", 0x16_B374D848, "16/B374D848"},
		{"0/3000000", 0x3000000, "0/3000000"},
		{"00000000/00000001", 1, "0/1"},
		{"FFFFFFFF/FFFFFFFF", ^wal.LSN(0), "FFFFFFFF/FFFFFFFF"},
		{"1/0", 1 << 32, "1/0"},
	}
	for _, tt := range tests {
		got, err := wal.ParseLSN(tt.in)
		if err != nil {
			t.Errorf("ParseLSN(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseLSN(%q) = %#x, want %#x", tt.in, uint64(got), uint64(tt.want))
		}
		if s := got.String(); s != tt.text {
			t.Errorf("String() = %q, want %q", s, tt.text)
		}
		back, err := wal.ParseLSN(got.String())
		if err != nil || back != got {
			t.Errorf("round trip of %q: %v, %v", got, back, err)
		}
	}
}

func TestParseLSNInvalid(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "/", "0/", "/0", "0", "16B374D848", "16/B374D848/0", " 0/0", "0/0 ", "0/0\n",
		"-1/0", "+1/0", "0x1/0", "1/0x0", "123456789/0", "0/123456789", "G/0", "0/G",
		"0//0", "0 /0", "0/ 0", "0\x00/0",
	} {
		_, err := wal.ParseLSN(in)
		if err == nil {
			t.Errorf("ParseLSN(%q) succeeded, want error", in)
			continue
		}
		if !errors.Is(err, wal.ErrInvalidLSN) {
			t.Errorf("ParseLSN(%q) error %v does not wrap ErrInvalidLSN", in, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseLSN(%q) error %q does not name the input", in, err)
		}
	}
}

func TestLSNText(t *testing.T) {
	t.Parallel()
	type doc struct {
		At wal.LSN `json:"at"`
	}
	b, err := json.Marshal(doc{At: 0x16_B374D848})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"at":"16/B374D848"}` {
		t.Fatalf("Marshal = %s", b)
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"at":"1/a"}`), &d); err != nil || d.At != 0x1_0000000A {
		t.Fatalf("Unmarshal = %v, %v", d.At, err)
	}
	if err := json.Unmarshal([]byte(`{"at":"nope"}`), &d); !errors.Is(err, wal.ErrInvalidLSN) {
		t.Fatalf("Unmarshal bad LSN error = %v", err)
	}
}
