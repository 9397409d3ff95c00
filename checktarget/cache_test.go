package checktarget

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// newCatalogServer builds server "pg" with an empty catalog; conninfo
// points nowhere (only the catalog is read here).
func newCatalogServer(t testing.TB) *server.Server {
	t.Helper()
	root := t.TempDir()
	cfgFile := filepath.Join(root, "cellar.yaml")
	yaml := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: \"host=127.0.0.1 port=1\"\n    archiver: true\n", filepath.Join(root, "home"))
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{File: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MakeDirectories(); err != nil {
		t.Fatal(err)
	}
	return s
}

// plain hides WALSummary, so checks.Summary folds a full WALs scan: the
// reference the cache must match.
type plain struct{ checks.Target }

// reference is what an uncached evaluation sees.
func reference(t *testing.T, s *server.Server) ([]checks.Backup, *checks.WALSummary) {
	t.Helper()
	infos, err := s.Catalog().Backups()
	if err != nil {
		t.Fatalf("reference backups: %v", err)
	}
	bs := []checks.Backup{}
	for _, b := range infos {
		bs = append(bs, toBackup(b))
	}
	sum, err := checks.Summary(t.Context(), plain{New(s)})
	if err != nil {
		t.Fatalf("reference summary: %v", err)
	}
	return bs, sum
}

func saveBackup(t testing.TB, s *server.Server, id string, status catalog.Status, begin, end int, tli uint32) {
	t.Helper()
	b := catalog.NewBackupInfo(id)
	b.Status = status
	b.BeginWAL = wal.Name{TLI: tli, Seg: uint32(begin)}.String()
	b.EndWAL = wal.Name{TLI: tli, Seg: uint32(end)}.String()
	b.Timeline = int64(tli)
	b.BeginTime = time.Unix(1_790_000_000+90*int64(begin), 0).UTC()
	b.EndTime = time.Unix(1_790_000_000+90*int64(end), 0).UTC()
	b.Size = catalog.Int64(int64(1000 * end))
	if err := s.Catalog().Save(b); err != nil {
		t.Fatal(err)
	}
}

func walsAt(tli uint32, segs ...int) []catalog.WALInfo {
	var out []catalog.WALInfo
	for _, seg := range segs {
		w := walAt(seg)
		w.Name = wal.Name{TLI: tli, Seg: uint32(seg)}.String()
		out = append(out, w)
	}
	return out
}

func TestCachedCatalogMatchesFresh(t *testing.T) {
	t.Parallel()
	s := newCatalogServer(t)
	ctx := t.Context()
	x := s.XLogDB()
	appendW := func(ws ...catalog.WALInfo) func(t *testing.T) {
		return func(t *testing.T) {
			if err := x.Append(ctx, ws...); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name string
		do   func(t *testing.T)
		// fullRead: the step must make the long-lived target read
		// xlog.db from the start again (false: only the appended part).
		fullRead bool
	}{
		{"empty catalog", func(*testing.T) {}, false},
		{"first WALs", appendW(walsAt(1, 1, 2, 3, 4, 5)...), true},
		{"append with a gap", appendW(walsAt(1, 8, 9)...), false},
		{"append out of order fills the gap", appendW(walsAt(1, 7, 6, 6)...), false},
		{"first backup", func(t *testing.T) { saveBackup(t, s, "20260101T000000", catalog.StatusDone, 3, 4, 1) }, true},
		{"append after the backup", appendW(walsAt(1, 10, 12)...), false},
		{"history and partial", appendW(
			catalog.WALInfo{Name: "00000002.history", Size: 42, Time: 1_790_001_000},
			catalog.WALInfo{Name: wal.Name{Kind: wal.KindPartial, TLI: 1, Seg: 13}.String(), Size: 7, Time: 1_790_002_000},
			catalog.WALInfo{Name: "not-a-wal", Size: 1, Time: 1_790_000_001},
		), false},
		{"new timeline", appendW(walsAt(2, 13, 15)...), false},
		{"failed backup (not available: same summary key)", func(t *testing.T) {
			saveBackup(t, s, "20260102T000000", catalog.StatusFailed, 12, 12, 1)
		}, false},
		{"newer backup", func(t *testing.T) { saveBackup(t, s, "20260103T000000", catalog.StatusDone, 9, 10, 1) }, true},
		{"backup.info changed in place of the same id", func(t *testing.T) {
			saveBackup(t, s, "20260103T000000", catalog.StatusWaitingForWALs, 9, 12, 1)
		}, true},
		{"prune (rewrite)", func(t *testing.T) {
			if _, err := x.Rewrite(ctx, func(w catalog.WALInfo) bool { return w.Name != walsAt(1, 2)[0].Name && w.Name != walsAt(1, 10)[0].Name }); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"oldest backup deleted", func(t *testing.T) {
			if err := os.Remove(s.Layout().BackupInfoPath("20260101T000000")); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"torn fragment is not read", func(t *testing.T) {
			f, err := os.OpenFile(x.Path(), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteString(walsAt(2, 16)[0].Name + "\t16"); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"append after the fragment", appendW(walsAt(2, 17)...), false},
		{"in-place rewrite of the last line", func(t *testing.T) {
			data, err := os.ReadFile(x.Path())
			if err != nil {
				t.Fatal(err)
			}
			// Same length, different size field: only the tail check
			// can tell.
			i := len(data) - 2
			for data[i] != '\t' {
				i--
			}
			data[i-1] = '9'
			f, err := os.OpenFile(x.Path(), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(data, 0); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"legacy backup.info", func(t *testing.T) {
			b := catalog.NewBackupInfo("20260104T000000")
			b.Status = catalog.StatusDone
			b.BeginWAL, b.EndWAL = walsAt(2, 15)[0].Name, walsAt(2, 15)[0].Name
			if err := os.MkdirAll(s.Layout().BackupDirPath(b.ID), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := catalog.WriteBackupInfo(s.Layout().LegacyBackupInfoPath(b.ID), b); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"xlog.db removed", func(t *testing.T) {
			if err := os.Remove(x.Path()); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"xlog.db back", appendW(walsAt(2, 20)...), true},
	}
	long := New(s)
	for _, st := range steps {
		st.do(t)
		before := long.wals.fullReads
		got, err := long.Backups(ctx)
		if err != nil {
			t.Fatalf("%s: Backups: %v", st.name, err)
		}
		gotSum, err := checks.Summary(ctx, long)
		if err != nil {
			t.Fatalf("%s: Summary: %v", st.name, err)
		}
		wantB, wantSum := reference(t, s)
		if !reflect.DeepEqual(got, wantB) {
			t.Errorf("%s: cached backups\n%+v\nwant\n%+v", st.name, got, wantB)
		}
		if !reflect.DeepEqual(gotSum, wantSum) {
			t.Errorf("%s: cached summary\n%+v\nwant\n%+v", st.name, gotSum, wantSum)
		}
		if full := long.wals.fullReads > before; full != st.fullRead {
			t.Errorf("%s: full xlog.db read = %v, want %v", st.name, full, st.fullRead)
		}
		// A fresh target (what `cellar check` builds) agrees too.
		freshSum, err := checks.Summary(ctx, New(s))
		if err != nil || !reflect.DeepEqual(freshSum, wantSum) {
			t.Errorf("%s: fresh target summary %+v, %v", st.name, freshSum, err)
		}
	}
	if len(long.backups.files) != 3 {
		t.Errorf("backup cache holds %d files, want 3 (deleted ones dropped)", len(long.backups.files))
	}
}

func TestCachedBadLines(t *testing.T) {
	t.Parallel()
	s := newCatalogServer(t)
	ctx := t.Context()
	x := s.XLogDB()
	if err := x.Append(ctx, walsAt(1, 1, 2)...); err != nil {
		t.Fatal(err)
	}
	long := New(s)
	if _, err := checks.Summary(ctx, long); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(x.Path(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("garbage\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Like a full scan, a bad line makes the summary fail, naming the
	// file, every time until it is fixed.
	for range 2 {
		_, err := checks.Summary(ctx, long)
		if err == nil || !errors.Is(err, catalog.ErrInvalidXLogLine) {
			t.Fatalf("summary with a bad line: %v, want ErrInvalidXLogLine", err)
		}
	}
	// A cancelled context stops the read; the next call completes it.
	if err := os.WriteFile(x.Path(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := x.Append(ctx, walsAt(1, 1, 2, 3)...); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	fresh := New(s)
	if _, err := checks.Summary(cancelled, fresh); !errors.Is(err, context.Canceled) {
		t.Fatalf("summary with a cancelled context: %v, want context.Canceled", err)
	}
	got, err := checks.Summary(ctx, fresh)
	if err != nil || got.Count != 3 {
		t.Fatalf("summary after a cancelled one: %+v, %v; want 3 WALs", got, err)
	}
}

func TestCachedConcurrent(t *testing.T) {
	t.Parallel()
	s := newCatalogServer(t)
	ctx := t.Context()
	saveBackup(t, s, "20260101T000000", catalog.StatusDone, 2, 3, 1)
	long := New(s)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 20 {
				if i == 0 {
					if err := s.XLogDB().Append(ctx, walsAt(1, 1+j)...); err != nil {
						t.Error(err)
					}
					continue
				}
				if _, err := checks.Summary(ctx, long); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, err := checks.Summary(ctx, long)
	if err != nil {
		t.Fatal(err)
	}
	_, want := reference(t, s)
	if !reflect.DeepEqual(got, want) || got.Count != 20 {
		t.Fatalf("after concurrent appends: %+v, want %+v (20 WALs)", got, want)
	}
}

// age sets the mtimes of meta/ and base/ an hour back, as if the catalog
// had been quiet since: the next listing can then be trusted while the
// directories keep that identity.
func age(t testing.TB, s *server.Server) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	for _, d := range []string{s.Layout().MetaDir, s.Layout().BaseDir} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
}

func writeLegacy(t testing.TB, s *server.Server, id string, status catalog.Status, size int64) {
	t.Helper()
	b := catalog.NewBackupInfo(id)
	b.Status = status
	b.BeginWAL, b.EndWAL = segName(3), segName(4)
	b.Size = catalog.Int64(size)
	if err := os.MkdirAll(s.Layout().BackupDirPath(id), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := catalog.WriteBackupInfo(s.Layout().LegacyBackupInfoPath(id), b); err != nil {
		t.Fatal(err)
	}
}

// While meta/ and base/ are unchanged the listing is reused: a changed
// backup.info of a running backup is still seen at once, a changed
// DONE one within restatSlices evaluations.
func TestCachedBackupsQuietCatalog(t *testing.T) {
	t.Parallel()
	s := newCatalogServer(t)
	ctx := t.Context()
	for i := range 20 {
		writeLegacy(t, s, fmt.Sprintf("202601%02dT000000", i+1), catalog.StatusDone, int64(i))
	}
	saveBackup(t, s, "20260201T000000", catalog.StatusDone, 5, 6, 1)
	if err := os.MkdirAll(s.Layout().BackupDirPath("20260301T000000"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeLegacy(t, s, "20260302T000000", catalog.StatusWaitingForWALs, 1)
	age(t, s)
	long := New(s)
	check := func(step string) {
		t.Helper()
		got, err := long.Backups(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		want, _ := reference(t, s)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: cached backups\n%+v\nwant\n%+v", step, got, want)
		}
	}
	check("first listing")
	if !long.backups.quiet {
		t.Fatal("aged directories not trusted")
	}
	check("reused listing")
	if long.backups.gen != 1 {
		t.Fatalf("listing not reused: gen %d", long.backups.gen)
	}

	writeLegacy(t, s, "20260302T000000", catalog.StatusDone, 2)
	check("running backup finished (base/ unchanged)")
	writeLegacy(t, s, "20260301T000000", catalog.StatusStarted, 3)
	check("backup.info appeared in an existing directory")
	if long.backups.gen != 3 {
		t.Fatalf("listing not reused while base/ kept its identity: gen %d, want 3", long.backups.gen)
	}

	writeLegacy(t, s, "20260105T000000", catalog.StatusDone, 99)
	seen := false
	for range restatSlices {
		got, err := long.Backups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range got {
			seen = seen || (b.ID == "20260105T000000" && b.Size == 99)
		}
	}
	if !seen {
		t.Fatalf("a changed DONE backup.info was not seen within %d evaluations", restatSlices)
	}
	check("after a round of re-stats")
	gen := long.backups.gen

	saveBackup(t, s, "20260202T000000", catalog.StatusDone, 7, 8, 1)
	check("new meta/ file")
	if long.backups.gen != 0 || gen == 0 {
		t.Fatalf("meta/ change did not cause a new listing (gen %d → %d)", gen, long.backups.gen)
	}
	if err := os.RemoveAll(s.Layout().BackupDirPath("20260110T000000")); err != nil {
		t.Fatal(err)
	}
	check("legacy backup removed")
}

// A delete_this marker (meta/ or legacy) shows a backup DELETING to the
// probes, through the cache and a saved state alike, and not available;
// removing it shows the stored status again.
func TestCachedBackupsShowDeleting(t *testing.T) {
	t.Parallel()
	s := stateCatalog(t)
	tg := New(s)
	evaluate(t, tg)
	status := func(id string) string {
		t.Helper()
		bs, err := tg.Backups(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.ID == id {
				if b.Available() && b.Status == checks.StatusDeleting {
					t.Fatalf("a DELETING backup counts as available")
				}
				return b.Status
			}
		}
		t.Fatalf("backup %s not listed", id)
		return ""
	}
	if err := s.Catalog().MarkDeleteThis("20260103T000000"); err != nil {
		t.Fatal(err)
	}
	if got := status("20260103T000000"); got != checks.StatusDeleting {
		t.Fatalf("marked backup shows %s", got)
	}
	sameAsCold(t, "meta marker", s, tg)
	if err := tg.SaveState(); err != nil {
		t.Fatal(err)
	}
	loaded := New(s)
	if err := loaded.LoadState(); err != nil {
		t.Fatal(err)
	}
	sameAsCold(t, "meta marker, loaded", s, loaded)

	legacy := filepath.Join(s.Layout().BackupDirPath("20251201T000000"), "annotations")
	if err := os.MkdirAll(legacy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(legacy, catalog.AnnotationDeleteThis), []byte("delete"), 0o600); err != nil {
		t.Fatal(err)
	}
	bs, err := New(s).Backups(t.Context())
	if err != nil || bs[0].ID != "20251201T000000" || bs[0].Status != checks.StatusDeleting {
		t.Fatalf("legacy marker: %+v %v", bs[0], err)
	}
	if err := s.Catalog().ClearDeleteThis("20260103T000000"); err != nil {
		t.Fatal(err)
	}
	if got := status("20260103T000000"); got != checks.StatusDone {
		t.Fatalf("unmarked backup shows %s", got)
	}
}
