package catalog

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

// copyTree copies a fixture directory into dst.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fixtureLayout returns a layout over a private copy of testdata/barman/pg1.
func fixtureLayout(t *testing.T) Layout {
	t.Helper()
	root := t.TempDir()
	l := NewLayout("pg1", filepath.Join(root, "pg1"), filepath.Join(root, "locks"))
	copyTree(t, "testdata/barman/pg1", l.BackupDir)
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	return l
}

func writeInfo(t *testing.T, path string, mutate func(b *BackupInfo)) {
	t.Helper()
	b := NewBackupInfo("")
	b.Mode = "postgres"
	mutate(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteBackupInfo(path, b); err != nil {
		t.Fatal(err)
	}
}

func TestLayoutPaths(t *testing.T) {
	t.Parallel()
	l := NewLayout("pg1", "/b/pg1", "/b")
	seg, _ := wal.ParseName("000000010000000A000000FE")
	hist, _ := wal.ParseName("00000002.history")
	tests := []struct{ got, want string }{
		{l.WalsDir, "/b/pg1/wals"},
		{l.IncomingDir, "/b/pg1/incoming"},
		{l.StreamingDir, "/b/pg1/streaming"},
		{l.ErrorsDir, "/b/pg1/errors"},
		{l.MetaDir, "/b/pg1/meta"},
		{l.BaseDir, "/b/pg1/base"},
		{l.IdentityPath(), "/b/pg1/identity.json"},
		{l.BackupDataDir("20240101T000000"), "/b/pg1/base/20240101T000000/data"},
		{l.BackupInfoPath("20240101T000000"), "/b/pg1/meta/20240101T000000-backup.info"},
		{l.XLogDBPath(), "/b/pg1/wals/pg1-xlog.db"},
		{l.WALPath(seg), "/b/pg1/wals/000000010000000A/000000010000000A000000FE"},
		{l.WALPath(hist), "/b/pg1/wals/00000002.history"},
		{l.ErrorPath("000000010000000A000000FE", "duplicate", time.Date(2024, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))),
			"/b/pg1/errors/000000010000000A000000FE.20240304T040607Z.duplicate"},
		{l.LockPath("archive-wal"), "/b/.pg1-archive-wal.lock"},
		{l.XLogDBLockPath(), "/b/.pg1-xlogdb.lock"},
		{l.BackupLockPath("20240101T000000"), "/b/.pg1-20240101T000000.lock"},
		{l.SyncWALsInfoPath(), "/b/pg1/wals/sync-wals.info"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestLayoutLegacyPaths(t *testing.T) {
	t.Parallel()
	l := fixtureLayout(t)
	// Only the legacy file exists for this id.
	if got, want := l.BackupInfoPath("20240110T020000"), l.LegacyBackupInfoPath("20240110T020000"); got != want {
		t.Errorf("legacy BackupInfoPath = %q, want %q", got, want)
	}
	if got, want := l.BackupInfoPath("20240115T100000"), l.MetaBackupInfoPath("20240115T100000"); got != want {
		t.Errorf("meta BackupInfoPath = %q, want %q", got, want)
	}
	// xlog.db: legacy name only when it is the one that exists.
	if err := os.WriteFile(filepath.Join(l.WalsDir, "xlog.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := l.XLogDBPath(); filepath.Base(got) != "xlog.db" {
		t.Errorf("XLogDBPath = %q, want the legacy xlog.db", got)
	}
	if err := os.WriteFile(filepath.Join(l.WalsDir, "pg1-xlog.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := l.XLogDBPath(); filepath.Base(got) != "pg1-xlog.db" {
		t.Errorf("XLogDBPath = %q, want pg1-xlog.db", got)
	}
	for _, d := range []string{l.WalsDir, l.IncomingDir, l.StreamingDir, l.ErrorsDir, l.MetaDir, l.BaseDir, l.LockDir} {
		fi, err := os.Stat(d)
		if err != nil || !fi.IsDir() {
			t.Errorf("MakeDirs did not create %s: %v", d, err)
		}
	}
	fi, _ := os.Stat(l.IncomingDir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("incoming mode %v, want 0700", fi.Mode().Perm())
	}
}

func ids(list []*BackupInfo) []string {
	out := make([]string, len(list))
	for i, b := range list {
		out[i] = b.ID
	}
	return out
}

func TestCatalogNavigation(t *testing.T) {
	t.Parallel()
	l := fixtureLayout(t)
	// Fixture: 20240110T020000 DONE rsync (legacy, named before-upgrade),
	// 20240115T100000 DONE postgres, 20240116T030000 FAILED. Add more.
	writeInfo(t, l.MetaBackupInfoPath("20240117T000000"), func(b *BackupInfo) {
		b.Status = StatusDone
		b.ParentBackupID = "20240115T100000"
		b.BackupName = "incr"
	})
	writeInfo(t, l.MetaBackupInfoPath("20240118T000000"), func(b *BackupInfo) { b.Status = StatusWaitingForWALs; b.ParentBackupID = "20240117T000000" })
	writeInfo(t, l.MetaBackupInfoPath("20240119T000000"), func(b *BackupInfo) { b.Status = StatusStarted })
	writeInfo(t, l.MetaBackupInfoPath("20240120T000000"), func(b *BackupInfo) { b.Status = StatusFailed; b.BackupName = "dup" })
	writeInfo(t, l.MetaBackupInfoPath("20240121T000000"), func(b *BackupInfo) { b.Status = StatusFailed; b.BackupName = "dup" })
	// Noise the scan must ignore.
	os.WriteFile(filepath.Join(l.MetaDir, "20240117T000000-keep"), []byte("full"), 0o600)
	os.WriteFile(filepath.Join(l.MetaDir, ".20240122T000000-backup.info123"), []byte("x"), 0o600)
	os.MkdirAll(filepath.Join(l.BaseDir, "20240123T000000", "data"), 0o700)
	os.MkdirAll(filepath.Join(l.BaseDir, "not-an-id"), 0o700)

	c := Open(l)
	all, err := c.Backups()
	if err != nil {
		t.Fatal(err)
	}
	wantAll := []string{"20240110T020000", "20240115T100000", "20240116T030000", "20240117T000000", "20240118T000000", "20240119T000000", "20240120T000000", "20240121T000000"}
	if got := ids(all); !slices.Equal(got, wantAll) {
		t.Fatalf("Backups = %v, want %v", got, wantAll)
	}
	avail, err := c.Available()
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(avail); !slices.Equal(got, []string{"20240110T020000", "20240115T100000", "20240117T000000", "20240118T000000"}) {
		t.Errorf("Available = %v", got)
	}
	failed, _ := c.Available(StatusFailed)
	if got := ids(failed); !slices.Equal(got, []string{"20240116T030000", "20240120T000000", "20240121T000000"}) {
		t.Errorf("Available(FAILED) = %v", got)
	}

	nav := []struct {
		name string
		fn   func() (*BackupInfo, error)
		want string // "" = ErrNotFound
	}{
		{"First", func() (*BackupInfo, error) { return c.First() }, "20240110T020000"},
		{"Last", func() (*BackupInfo, error) { return c.Last() }, "20240118T000000"},
		{"LastFull", func() (*BackupInfo, error) { return c.LastFull() }, "20240115T100000"},
		{"LastFailed", c.LastFailed, "20240121T000000"},
		{"Next", func() (*BackupInfo, error) { return c.Next("20240115T100000") }, "20240117T000000"},
		{"NextOfLast", func() (*BackupInfo, error) { return c.Next("20240118T000000") }, ""},
		{"Previous", func() (*BackupInfo, error) { return c.Previous("20240117T000000") }, "20240115T100000"},
		{"PreviousAll", func() (*BackupInfo, error) { return c.Previous("20240117T000000", AllStatuses()...) }, "20240116T030000"},
		{"PreviousOfFirst", func() (*BackupInfo, error) { return c.Previous("20240110T020000") }, ""},
		{"Get", func() (*BackupInfo, error) { return c.Get("20240116T030000") }, "20240116T030000"},
		{"GetMissing", func() (*BackupInfo, error) { return c.Get("20990101T000000") }, ""},
		{"latest", func() (*BackupInfo, error) { return c.Resolve("latest") }, "20240118T000000"},
		{"last", func() (*BackupInfo, error) { return c.Resolve("last") }, "20240118T000000"},
		{"oldest", func() (*BackupInfo, error) { return c.Resolve("oldest") }, "20240110T020000"},
		{"first", func() (*BackupInfo, error) { return c.Resolve("first") }, "20240110T020000"},
		{"last-failed", func() (*BackupInfo, error) { return c.Resolve("last-failed") }, "20240121T000000"},
		{"latest-full", func() (*BackupInfo, error) { return c.Resolve("latest-full") }, "20240115T100000"},
		{"last-full", func() (*BackupInfo, error) { return c.Resolve("last-full") }, "20240115T100000"},
		{"by id", func() (*BackupInfo, error) { return c.Resolve("20240110T020000") }, "20240110T020000"},
		{"by name", func() (*BackupInfo, error) { return c.Resolve("before-upgrade") }, "20240110T020000"},
		{"by name 2", func() (*BackupInfo, error) { return c.Resolve("incr") }, "20240117T000000"},
		{"unknown name", func() (*BackupInfo, error) { return c.Resolve("nope") }, ""},
	}
	for _, n := range nav {
		b, err := n.fn()
		if n.want == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: got %v, %v; want ErrNotFound", n.name, b, err)
			}
			continue
		}
		if err != nil || b.ID != n.want {
			t.Errorf("%s: got %v, %v; want %s", n.name, b, err, n.want)
		}
	}
	if _, err := c.Resolve("dup"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("Resolve(dup) = %v, want ErrAmbiguous", err)
	}
	if _, err := c.Get("../x"); !errors.Is(err, ErrInvalidBackupID) {
		t.Errorf("Get(../x) = %v, want ErrInvalidBackupID", err)
	}
}

func TestCatalogEmpty(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	c := Open(NewLayout("pg9", filepath.Join(root, "missing"), root))
	all, err := c.Backups()
	if err != nil || len(all) != 0 {
		t.Errorf("Backups on a missing dir = %v, %v", all, err)
	}
	for _, r := range []string{"latest", "oldest", "last-failed", "latest-full"} {
		if _, err := c.Resolve(r); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%s) = %v, want ErrNotFound", r, err)
		}
	}
}

func TestCatalogUnreadable(t *testing.T) {
	t.Parallel()
	l := fixtureLayout(t)
	bad := l.MetaBackupInfoPath("20240119T000000")
	if err := os.WriteFile(bad, []byte("status=DONE\nwhat_is_this=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Open(l)
	all, err := c.Backups()
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "what_is_this") {
		t.Fatalf("error %v does not name %s and the key", err, bad)
	}
	if !errors.Is(err, ErrInvalidBackupInfo) {
		t.Errorf("error %v does not match ErrInvalidBackupInfo", err)
	}
	if len(all) != 3 {
		t.Errorf("readable backups = %v, want the 3 good ones", ids(all))
	}
	// Navigation still works on the readable ones.
	if b, err := c.Last(); err != nil || b.ID != "20240115T100000" {
		t.Errorf("Last = %v, %v", b, err)
	}
}

func TestCatalogSaveMigratesLegacy(t *testing.T) {
	t.Parallel()
	l := fixtureLayout(t)
	c := Open(l)
	b, err := c.Get("20240110T020000")
	if err != nil {
		t.Fatal(err)
	}
	b.Status = StatusFailed
	b.Error = "failure delete (test)"
	if err := c.Save(b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.MetaBackupInfoPath(b.ID)); err != nil {
		t.Fatalf("Save did not write meta/: %v", err)
	}
	again, err := c.Get(b.ID)
	if err != nil || again.Status != StatusFailed || again.Error != "failure delete (test)" {
		t.Errorf("Get after Save = %+v, %v", again, err)
	}
	// Everything else is kept byte for byte.
	old, _ := os.ReadFile(l.LegacyBackupInfoPath(b.ID))
	cur, _ := os.ReadFile(l.MetaBackupInfoPath(b.ID))
	oldLines, curLines := strings.Split(string(old), "\n"), strings.Split(string(cur), "\n")
	diff := 0
	for i := range oldLines {
		if oldLines[i] != curLines[i] {
			diff++
		}
	}
	if len(oldLines) != len(curLines) || diff != 2 {
		t.Errorf("%d lines changed, want 2 (error, status)", diff)
	}
	if err := c.Save(&BackupInfo{ID: "bad/id"}); !errors.Is(err, ErrInvalidBackupID) {
		t.Errorf("Save(bad id) = %v", err)
	}
}

func TestAnnotations(t *testing.T) {
	t.Parallel()
	l := fixtureLayout(t)
	c := Open(l)
	id := "20240115T100000"
	if k, err := c.Keep(id); err != nil || k != "" {
		t.Fatalf("Keep on fresh backup = %q, %v", k, err)
	}
	if err := c.SetKeep(id, KeepStandalone); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(l.MetaDir, id+"-keep"))
	if string(data) != "standalone" {
		t.Errorf("keep file = %q", data)
	}
	if k, _ := c.Keep(id); k != KeepStandalone {
		t.Errorf("Keep = %q", k)
	}
	if err := c.SetKeep(id, "forever"); err == nil {
		t.Error("SetKeep accepted a bad target")
	}
	if err := c.ReleaseKeep(id); err != nil {
		t.Fatal(err)
	}
	if k, _ := c.Keep(id); k != "" {
		t.Errorf("Keep after release = %q", k)
	}
	// Legacy annotation directory.
	legacyID := "20240110T020000"
	os.MkdirAll(filepath.Join(l.BaseDir, legacyID, "annotations"), 0o700)
	os.WriteFile(filepath.Join(l.BaseDir, legacyID, "annotations", "keep"), []byte("full\n"), 0o600)
	if k, _ := c.Keep(legacyID); k != KeepFull {
		t.Errorf("legacy Keep = %q", k)
	}
	if err := c.ReleaseKeep(legacyID); err != nil {
		t.Fatal(err)
	}
	if k, _ := c.Keep(legacyID); k != "" {
		t.Errorf("legacy Keep after release = %q", k)
	}
	// delete_this marker.
	if ok, _ := c.HasDeleteThis(id); ok {
		t.Error("fresh backup has delete_this")
	}
	if err := c.MarkDeleteThis(id); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.HasDeleteThis(id); !ok {
		t.Error("delete_this not seen")
	}
	if err := c.ClearDeleteThis(id); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.HasDeleteThis(id); ok {
		t.Error("delete_this still there")
	}
	if err := c.SetAnnotation("../x", "keep", "full"); !errors.Is(err, ErrInvalidBackupID) {
		t.Errorf("SetAnnotation(bad id) = %v", err)
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	want, err := os.ReadFile("testdata/identity.json")
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseIdentity(want, "testdata/identity.json")
	if err != nil {
		t.Fatal(err)
	}
	if id != (Identity{SystemID: "7311211231231231231", Version: "15"}) {
		t.Errorf("ParseIdentity = %+v", id)
	}
	if got := MarshalIdentity(id); !bytes.Equal(got, want) {
		t.Errorf("MarshalIdentity:\n%s\nwant\n%s", got, want)
	}
	l := NewLayout("pg1", t.TempDir(), t.TempDir())
	if _, err := ReadIdentity(l); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadIdentity on empty dir = %v", err)
	}
	if err := WriteIdentity(l, id); err != nil {
		t.Fatal(err)
	}
	got, err := ReadIdentity(l)
	if err != nil || got != id {
		t.Errorf("ReadIdentity = %+v, %v", got, err)
	}
	onDisk, _ := os.ReadFile(l.IdentityPath())
	if !bytes.Equal(onDisk, want) {
		t.Errorf("written identity.json differs")
	}
	num, err := ParseIdentity([]byte(`{"systemid": 7311211231231231231, "version": "9.6"}`), "x")
	if err != nil || num.SystemID != "7311211231231231231" || num.Version != "9.6" {
		t.Errorf("numeric systemid: %+v, %v", num, err)
	}
	if _, err := ParseIdentity([]byte(`{"systemid": [1]}`), "x"); err == nil {
		t.Error("list systemid accepted")
	}
	if got := pyJSONString("é<\"\U0001F600"); got != `"\u00e9<\"\ud83d\ude00"` {
		t.Errorf("pyJSONString = %s", got)
	}
}

// TestDeletingAndUnreadable: a delete_this marker shows a DONE backup as
// DELETING (stored status kept, byte for byte), which no shortcut picks;
// a truncated or unparsable backup.info is reported as unreadable, never
// as an EMPTY backup.
func TestDeletingAndUnreadable(t *testing.T) {
	l := NewLayout("pg", t.TempDir(), t.TempDir())
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	c := Open(l)
	for _, id := range []string{"20250101T000000", "20250102T000000", "20250103T000000"} {
		b := NewBackupInfo(id)
		b.Status = StatusDone
		b.BeginWAL, b.EndWAL = "000000010000000000000002", "000000010000000000000002"
		if err := c.Save(b); err != nil {
			t.Fatal(err)
		}
	}
	before, err := os.ReadFile(l.MetaBackupInfoPath("20250103T000000"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.MarkDeleteThis("20250103T000000"); err != nil {
		t.Fatal(err)
	}
	b, err := c.Get("20250103T000000")
	if err != nil || b.Status != StatusDeleting || b.StoredStatus() != StatusDone {
		t.Fatalf("marked backup: %v %v", b, err)
	}
	if got := b.Marshal(); string(got) != string(before) {
		t.Fatalf("a DELETING backup must marshal its stored status:\n%s", got)
	}
	if last, err := c.Resolve("latest"); err != nil || last.ID != "20250102T000000" {
		t.Fatalf("latest picked %v (%v), want the intact 20250102T000000", last, err)
	}
	if ids, err := c.PendingDeletions(); err != nil || len(ids) != 1 || ids[0] != "20250103T000000" {
		t.Fatalf("PendingDeletions = %v, %v", ids, err)
	}

	full, err := os.ReadFile(l.MetaBackupInfoPath("20250101T000000"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"truncated at 300 bytes": full[:300],
		"truncated at a newline": full[:bytes.LastIndexByte(full[:300], '\n')+1],
		"unparsable":             []byte("this is not a backup.info\n"),
		"unknown status":         []byte("status=DO\n"),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(l.MetaBackupInfoPath("20250101T000000"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			all, err := c.Backups()
			un := UnreadableBackups(err)
			if len(all) != 2 || len(un) != 1 || un[0].ID != "20250101T000000" || un[0].Path != l.MetaBackupInfoPath("20250101T000000") {
				t.Fatalf("Backups = %d backups, unreadable %v (err %v)", len(all), un, err)
			}
			if !strings.Contains(err.Error(), l.MetaBackupInfoPath("20250101T000000")) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}
