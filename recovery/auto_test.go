package recovery

import (
	"errors"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

func TestSelectAuto(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id string, st catalog.Status, end time.Duration, endLSN string, tli int64) *catalog.BackupInfo {
		b := catalog.NewBackupInfo(id)
		b.Status, b.EndTime, b.EndXLog, b.Timeline = st, t0.Add(end), endLSN, tli
		return b
	}
	bs := []*catalog.BackupInfo{
		mk("20250101T000000", catalog.StatusDone, time.Hour, "0/3000000", 1),
		mk("20250102T000000", catalog.StatusDone, 25*time.Hour, "0/9000000", 2),
		mk("20250103T000000", catalog.StatusFailed, 49*time.Hour, "0/F000000", 2),
	}
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	lsn := func(s string) *wal.LSN { l, _ := wal.ParseLSN(s); return &l }
	for _, tc := range []struct {
		name   string
		target Target
		want   string
		err    error
	}{
		{"newest-available", Target{}, "20250102T000000", nil},
		{"timeline-1", Target{TLI: "1"}, "20250101T000000", nil},
		{"time-between", Target{Time: at(10 * time.Hour)}, "20250101T000000", nil},
		{"time-after-all", Target{Time: at(100 * time.Hour)}, "20250102T000000", nil},
		{"time-before-all", Target{Time: at(0)}, "", ErrNoBackupForTarget},
		{"lsn", Target{LSN: lsn("0/5000000")}, "20250101T000000", nil},
		{"xid-refused", Target{XID: "1"}, "", ErrInvalidOptions},
		{"current-refused", Target{TLI: "current"}, "", ErrInvalidOptions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := SelectAuto(bs, tc.target)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || b.ID != tc.want {
				t.Fatalf("got %v %v, want %s", b, err, tc.want)
			}
		})
	}
}

func TestMangleConfig(t *testing.T) {
	in := "a = 1\narchive_command = 'cp %p /x/%f'\n  recovery_target_name = 'old'\ndata_directory = '/var/lib/pg'\n# archive_command = 'no'\n"
	out, changed, warns := mangleConfig("postgresql.conf", []byte(in), true)
	want := "a = 1\n#CELLAR# archive_command = 'cp %p /x/%f'\n#CELLAR#   recovery_target_name = 'old'\ndata_directory = '/var/lib/pg'\n# archive_command = 'no'\n"
	if string(out) != want || !changed || len(warns) != 1 {
		t.Fatalf("got %q changed=%v warns=%v", out, changed, warns)
	}
}
