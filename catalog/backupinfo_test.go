package catalog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The fixtures follow Barman 3.13+ output exactly; reading and marshalling
// them must give back the same bytes.
func TestBackupInfoFixturesRoundTrip(t *testing.T) {
	t.Parallel()
	for _, path := range []string{
		"testdata/barman/pg1/meta/20240115T100000-backup.info",
		"testdata/barman/pg1/meta/20240116T030000-backup.info",
		"testdata/barman/pg1/base/20240110T020000/backup.info",
	} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := ReadBackupInfo(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Marshal(); !bytes.Equal(got, data) {
				t.Errorf("Marshal differs from %s:\n--- got\n%s--- want\n%s", path, got, data)
			}
		})
	}
}

func TestBackupInfoFixtureValues(t *testing.T) {
	t.Parallel()
	b, err := ReadBackupInfo("testdata/barman/pg1/meta/20240115T100000-backup.info")
	if err != nil {
		t.Fatal(err)
	}
	cet := time.FixedZone("", 3600)
	checks := []struct {
		name      string
		got, want any
	}{
		{"ID", b.ID, "20240115T100000"},
		{"Status", b.Status, StatusDone},
		{"BeginTime", b.BeginTime.Equal(time.Date(2024, 1, 15, 10, 0, 1, 123456000, cet)), true},
		{"BeginOffset", *b.BeginOffset, int64(40)},
		{"Size", *b.Size, int64(23510000)},
		{"Version", b.Version, int64(150004)},
		{"Timeline", b.Timeline, int64(1)},
		{"Tablespaces", b.Tablespaces, []Tablespace{{"tbs1", 16385, "/srv/tbs1"}, {"tbs2", 16386, "/srv/tbs2"}}},
		{"CopyStats", b.CopyStats, map[string]float64{"copy_time": 1.723049, "total_time": 1.723049}},
		{"BackupLabel", b.BackupLabel, ""},
		{"IncludedFiles", b.IncludedFiles == nil, true},
		{"Error", b.Error, ""},
		{"BackupType", b.BackupType(), "full"},
		{"XLogSegmentSize", b.XLogSegmentSize, int64(DefaultXLogSegmentSize)},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}

	legacy, err := ReadBackupInfo("testdata/barman/pg1/base/20240110T020000/backup.info")
	if err != nil {
		t.Fatal(err)
	}
	if legacy.ID != "20240110T020000" || legacy.BackupName != "before-upgrade" || legacy.BackupType() != "rsync" {
		t.Errorf("legacy: id %q name %q type %q", legacy.ID, legacy.BackupName, legacy.BackupType())
	}
	if !strings.HasPrefix(legacy.BackupLabel, "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT") {
		t.Errorf("BackupLabel = %q", legacy.BackupLabel)
	}
	if legacy.CopyStats["number_of_workers"] != 2 || legacy.CopyStats["copy_time"] != 8.12 {
		t.Errorf("CopyStats = %v", legacy.CopyStats)
	}
	if !slices.Equal(legacy.IncludedFiles, []string{"/etc/postgresql/15/main/conf.d/tuning.conf"}) {
		t.Errorf("IncludedFiles = %v", legacy.IncludedFiles)
	}
	if legacy.EndOffset == nil || *legacy.EndOffset != 0 || legacy.ClusterSize != nil {
		t.Errorf("EndOffset %v ClusterSize %v: want 0 and nil", legacy.EndOffset, legacy.ClusterSize)
	}
}

// An old Barman wrote fewer keys; Marshal adds them in sorted order with
// None (or the default) and keeps the others verbatim.
func TestBackupInfoOldBarman(t *testing.T) {
	t.Parallel()
	b, err := ReadBackupInfo("testdata/barman2-backup.info")
	if err != nil {
		t.Fatal(err)
	}
	out := string(b.Marshal())
	for _, want := range []string{
		"children_backup_ids=None\n", "cluster_size=None\n", "encryption=None\n",
		"end_time=2019-03-01 01:00:04.5+00:00\n", "parent_backup_id=None\n",
		"copy_stats={'copy_time': 3.5, 'total_time': 4.0}\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Marshal lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "backup_name") || strings.Contains(out, "snapshots_info") || strings.Contains(out, "#") {
		t.Errorf("Marshal has hidden keys or comments:\n%s", out)
	}
	again, err := ParseBackupInfo([]byte(out), "again")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Marshal(), []byte(out)) {
		t.Error("second round trip differs")
	}
	keys := []string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, _, _ := strings.Cut(line, "=")
		keys = append(keys, k)
	}
	if !slices.IsSorted(keys) || len(keys) != len(infoFields)-2 {
		t.Errorf("keys not sorted or incomplete: %v", keys)
	}
}

func TestBackupInfoModify(t *testing.T) {
	t.Parallel()
	b, err := ReadBackupInfo("testdata/barman/pg1/base/20240110T020000/backup.info")
	if err != nil {
		t.Fatal(err)
	}
	b.Status = StatusFailed
	b.Error = "failure check-backup (missing WAL)"
	b.BackupName = ""
	b.Tablespaces = []Tablespace{{Name: "it's", OID: 1, Location: "/x"}}
	b.CopyStats = map[string]float64{"total_time": 2, "copy_time": 1.25}
	b.EndTime = time.Date(2024, 2, 1, 12, 0, 0, 0, time.UTC)
	out := string(b.Marshal())
	for _, want := range []string{
		"status=FAILED\n",
		"error=failure check-backup (missing WAL)\n",
		`tablespaces=[("it's", 1, '/x')]` + "\n",
		"copy_stats={'copy_time': 1.25, 'total_time': 2.0}\n",
		"end_time=2024-02-01 12:00:00+00:00\n",
		"included_files=['/etc/postgresql/15/main/conf.d/tuning.conf']\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Marshal lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "backup_name") {
		t.Error("null backup_name must be omitted")
	}
	again, err := ParseBackupInfo([]byte(out), "x")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again.Tablespaces, b.Tablespaces) || !again.EndTime.Equal(b.EndTime) {
		t.Errorf("re-read %+v %v", again.Tablespaces, again.EndTime)
	}
}

func TestNewBackupInfoMarshal(t *testing.T) {
	t.Parallel()
	b := NewBackupInfo("20240101T000000")
	b.BeginOffset = Int64(0)
	b.BackupName = "nightly"
	out := string(b.Marshal())
	for _, want := range []string{"status=EMPTY\n", "xlog_segment_size=16777216\n", "begin_offset=0\n", "backup_name=nightly\n", "size=None\n", "timeline=None\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("Marshal lacks %q:\n%s", want, out)
		}
	}
}

func TestParseBackupInfoErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		line     int
		key      string
		unknown  bool
	}{
		{"unknown key", "status=DONE\n\nbogus_key=1\n", 3, "bogus_key", true},
		{"no equals", "status=DONE\njunk\n", 2, "", false},
		{"bad int", "size=12a\n", 1, "size", false},
		{"bad time", "begin_time=soon\n", 1, "begin_time", false},
		{"bad tablespaces", "tablespaces=[('a', 'b')]\n", 1, "tablespaces", false},
		{"bad literal", "backup_label=[\n", 1, "backup_label", false},
		{"label not str", "backup_label=42\n", 1, "backup_label", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseBackupInfo([]byte(tc.in), "/srv/x/backup.info")
			var ie *InfoError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInvalidBackupInfo) {
				t.Fatalf("error %v is not an *InfoError", err)
			}
			if ie.Line != tc.line || ie.Key != tc.key || ie.File != "/srv/x/backup.info" {
				t.Errorf("got line %d key %q file %q", ie.Line, ie.Key, ie.File)
			}
			if errors.Is(err, errUnknownKey) != tc.unknown {
				t.Errorf("unknown-key match = %v", !tc.unknown)
			}
			for _, part := range []string{"/srv/x/backup.info", "line"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("message %q lacks %q", err, part)
				}
			}
		})
	}
}

func TestParseBackupInfoLenient(t *testing.T) {
	t.Parallel()
	in := "  # comment\n\n status = DONE \r\nsize=None\nsize=5\nchildren_backup_ids=a,b\n"
	b, err := ParseBackupInfo([]byte(in), "x")
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != StatusDone || b.Size == nil || *b.Size != 5 || !slices.Equal(b.ChildrenBackupIDs, []string{"a", "b"}) {
		t.Errorf("got %+v", b)
	}
}

func TestBackupType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode, parent, want string
		full               bool
	}{
		{"postgres", "", "full", true},
		{"postgres", "20240101T000000", "incremental", false},
		{"rsync-concurrent", "", "rsync", true},
		{"rsync-exclusive", "", "rsync", true},
		{"snapshot-concurrent", "", "snapshot", false},
		{"", "", "full", true},
	}
	for _, tc := range tests {
		b := &BackupInfo{Mode: tc.mode, ParentBackupID: tc.parent}
		if got := b.BackupType(); got != tc.want || b.IsFull() != tc.full {
			t.Errorf("mode %q parent %q: type %q full %v, want %q %v", tc.mode, tc.parent, got, b.IsFull(), tc.want, tc.full)
		}
	}
}

func TestCanTransition(t *testing.T) {
	t.Parallel()
	allowed := map[[2]Status]bool{
		{StatusEmpty, StatusStarted}:          true,
		{StatusEmpty, StatusFailed}:           true,
		{StatusEmpty, StatusSyncing}:          true,
		{StatusStarted, StatusWaitingForWALs}: true,
		{StatusStarted, StatusFailed}:         true,
		{StatusWaitingForWALs, StatusDone}:    true,
		{StatusWaitingForWALs, StatusFailed}:  true,
		{StatusSyncing, StatusDone}:           true,
		{StatusSyncing, StatusFailed}:         true,
		{StatusFailed, StatusSyncing}:         true,
	}
	for _, from := range AllStatuses() {
		for _, to := range AllStatuses() {
			want := from == to || allowed[[2]Status{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
	if CanTransition("BOGUS", StatusDone) || Status("BOGUS").Valid() || !StatusSyncing.Valid() {
		t.Error("unknown status accepted")
	}
}

func TestWriteBackupInfo(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := ReadBackupInfo("testdata/barman/pg1/meta/20240115T100000-backup.info")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "20240115T100000-backup.info")
	if err := WriteBackupInfo(p, b); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, _ := os.ReadFile(p)
	want, _ := os.ReadFile("testdata/barman/pg1/meta/20240115T100000-backup.info")
	if !bytes.Equal(got, want) {
		t.Error("written file differs from fixture")
	}
}

// Every backup.info key knows its None form, which a duplicate key starts
// from (the last one wins, as in Barman).
func TestInfoFieldsNull(t *testing.T) {
	t.Parallel()
	full, err := ReadBackupInfo("testdata/barman/pg1/meta/20240115T100000-backup.info")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range infoFields {
		if f.null == nil {
			t.Errorf("%s: no null", f.key)
			continue
		}
		b := *full
		f.null(&b)
		if got := f.format(&b); got != "None" {
			t.Errorf("%s after null formats as %q, want None", f.key, got)
		}
	}
	data := []byte("size=42\nsize=None\nstatus=DONE\nstatus=FAILED\n")
	b, err := ParseBackupInfo(data, "dup")
	if err != nil {
		t.Fatal(err)
	}
	if b.Size != nil || b.Status != StatusFailed {
		t.Errorf("duplicate keys: size %v status %q, want the last of each", b.Size, b.Status)
	}
}
