package wal_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/wal"
)

func TestParseHistoryRealFile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/pg15/00000002.history")
	if err != nil {
		t.Fatal(err)
	}
	got, err := wal.ParseHistory(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []wal.HistoryEntry{{ParentTLI: 1, SwitchPoint: 0x1500790, Reason: "no recovery target specified"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseHistory = %+v, want %+v", got, want)
	}
	// PostgreSQL's own output is already canonical.
	if f := wal.FormatHistory(got); string(f) != string(data) {
		t.Errorf("FormatHistory = %q, want the file verbatim %q", f, data)
	}
}

func TestParseHistory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []wal.HistoryEntry
	}{
		{"empty", "", nil},
		{"only comments", "# nothing\n\n   \n\t# indented comment\n", nil},
		{"one line", "1\t0/3000000\tno recovery target specified\n",
			[]wal.HistoryEntry{{1, 0x3000000, "no recovery target specified"}}},
		{"no trailing newline", "1\t0/3000000\tno recovery target specified",
			[]wal.HistoryEntry{{1, 0x3000000, "no recovery target specified"}}},
		{
			// PostgreSQL copies the parent's file and appends "\n<line>",
			// which can leave blank lines; reasons may contain quotes,
			// tabs and spaces.
			"chain", "1\t0/3000000\tno recovery target specified\n\n2\t0/5000A28\tbefore 2024-01-02 10:00:00+00\n\n3\t1/0\tat restore point \"barman_20240102T100000\"\n",
			[]wal.HistoryEntry{
				{1, 0x3000000, "no recovery target specified"},
				{2, 0x5000A28, "before 2024-01-02 10:00:00+00"},
				{3, 1 << 32, `at restore point "barman_20240102T100000"`},
			},
		},
		{"spaces instead of tabs, CRLF", "1 0/3000000   some reason \r\n2\t0/3000000\r\n",
			[]wal.HistoryEntry{{1, 0x3000000, "some reason"}, {2, 0x3000000, ""}}},
		{"lower-case LSN, no reason", "7\t16/b374d848\n", []wal.HistoryEntry{{7, 0x16_B374D848, ""}}},
		{"tab in reason kept", "1\t0/1\ta\tb\n", []wal.HistoryEntry{{1, 1, "a\tb"}}},
		// Found by FuzzTimelineHistory: reasons are bytes, not UTF-8 text,
		// and a lone CR inside one is not a line end.
		{"latin-1 reason", "1\t0/0\t\xc30 \xe9t\xe9\n", []wal.HistoryEntry{{1, 0, "\xc30 \xe9t\xe9"}}},
		{"CR inside reason", "1 0/0 0\r0", []wal.HistoryEntry{{1, 0, "0\r0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := wal.ParseHistory([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			again, err := wal.ParseHistory(wal.FormatHistory(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("format/parse round trip = %+v, %v", again, err)
			}
		})
	}
}

func TestParseHistoryErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		line string // "line N" expected in the message
		what string // another expected fragment
	}{
		{"x\t0/1\treason\n", "line 1", "numeric timeline"},
		{"1\n", "line 1", "switch point"},
		{"1\tnope\treason\n", "line 1", "nope"},
		{"0\t0/1\treason\n", "line 1", "timeline ID 0"},
		{"-1\t0/1\n", "line 1", "numeric timeline"},
		{"4294967296\t0/1\n", "line 1", "numeric timeline"},
		{"# c\n1\t0/1\tr\n\n1\t0/2\tr\n", "line 4", "does not increase"},
		{"2\t0/1\tr\n1\t0/2\tr\n", "line 2", "does not increase"},
		{"1\t0/5000000\tr\n2\t0/4000000\tr\n", "line 2", "before previous"},
		{"1\t0/1/2\tr\n", "line 1", "0/1/2"},
	}
	for _, tt := range tests {
		_, err := wal.ParseHistory([]byte(tt.in))
		if err == nil {
			t.Errorf("ParseHistory(%q) succeeded", tt.in)
			continue
		}
		if !errors.Is(err, wal.ErrInvalidHistory) {
			t.Errorf("ParseHistory(%q) error %v does not wrap ErrInvalidHistory", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.line+":") || !strings.Contains(err.Error(), tt.what) {
			t.Errorf("ParseHistory(%q) error %q, want %q and %q", tt.in, err, tt.line, tt.what)
		}
	}
}

func TestFormatHistorySanitises(t *testing.T) {
	t.Parallel()
	in := []wal.HistoryEntry{{1, 0x3000000, "evil\nreason\r"}, {2, 0x4000000, "  padded  "}}
	out := wal.FormatHistory(in)
	if want := "1\t0/3000000\tevil reason\n2\t0/4000000\tpadded\n"; string(out) != want {
		t.Fatalf("FormatHistory = %q, want %q", out, want)
	}
}

func TestTimelineForLSN(t *testing.T) {
	t.Parallel()
	// History of timeline 4: 1 until 0/3000000, 2 until 0/5000000, 3 until
	// 0/5000000 too (promoted again before writing anything), then 4.
	h, err := wal.ParseHistory([]byte("1\t0/3000000\ta\n2\t0/5000000\tb\n3\t0/5000000\tc\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		lsn  wal.LSN
		want uint32
	}{
		{0, 1},
		{0x2FFFFFF, 1},
		{0x3000000, 2}, // the switch point itself belongs to the child
		{0x4FFFFFF, 2},
		{0x5000000, 4}, // timeline 3 covers an empty range
		{1 << 40, 4},
	}
	for _, tt := range tests {
		if got := wal.TimelineForLSN(h, 4, tt.lsn); got != tt.want {
			t.Errorf("TimelineForLSN(%s) = %d, want %d", tt.lsn, got, tt.want)
		}
	}
	if got := wal.TimelineForLSN(nil, 1, 0x12345); got != 1 {
		t.Errorf("no history: got %d, want the target timeline", got)
	}
}
