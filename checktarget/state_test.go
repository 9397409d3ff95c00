package checktarget

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/server"
)

// evaluate is one probe run's catalog work: Backups then the summary.
func evaluate(t testing.TB, tg *Target) ([]checks.Backup, *checks.WALSummary) {
	t.Helper()
	ctx := context.Background()
	bs, err := tg.Backups(ctx)
	if err != nil {
		t.Fatalf("Backups: %v", err)
	}
	sum, err := tg.WALSummary(ctx, bs)
	if err != nil {
		t.Fatalf("WALSummary: %v", err)
	}
	return bs, sum
}

// sameAsCold fails unless tg answers like an uncached read and like a
// fresh cold Target.
func sameAsCold(t *testing.T, step string, s *server.Server, tg *Target) {
	t.Helper()
	got, gotSum := evaluate(t, tg)
	wantB, wantSum := reference(t, s)
	if !reflect.DeepEqual(got, wantB) {
		t.Errorf("%s: backups\n%+v\nwant\n%+v", step, got, wantB)
	}
	if !reflect.DeepEqual(gotSum, wantSum) {
		t.Errorf("%s: summary\n%+v\nwant\n%+v", step, gotSum, wantSum)
	}
	coldB, coldSum := evaluate(t, New(s))
	if !reflect.DeepEqual(got, coldB) || !reflect.DeepEqual(gotSum, coldSum) {
		t.Errorf("%s: loaded target differs from a cold one", step)
	}
}

// stateCatalog is a catalog with meta/ and legacy backups in several
// states (times with and without offsets) and xlog.db with a gap.
func stateCatalog(t testing.TB) *server.Server {
	t.Helper()
	s := newCatalogServer(t)
	if err := s.XLogDB().Append(context.Background(), walsAt(1, 1, 2, 3, 4, 5, 6, 9, 10, 11)...); err != nil {
		t.Fatal(err)
	}
	saveBackup(t, s, "20260101T000000", catalog.StatusDone, 2, 3, 1)
	saveBackup(t, s, "20260102T000000", catalog.StatusFailed, 4, 4, 1)
	saveBackup(t, s, "20260103T000000", catalog.StatusDone, 5, 6, 1)
	saveBackup(t, s, "20260104T000000", catalog.StatusStarted, 9, 10, 1)
	writeLegacy(t, s, "20251201T000000", catalog.StatusDone, 7)
	writeLegacy(t, s, "20251203T000000", catalog.StatusStarted, 1)
	// A naive (local time) begin_time, as older Barman wrote.
	dir := s.Layout().BackupDirPath("20251202T000000")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	info := "status=DONE\nbegin_time=2025-12-02 00:00:00\nend_time=2025-12-02 01:00:00.5+05:30\nbegin_wal=" +
		segName(1) + "\nend_wal=" + segName(2) + "\nsize=5\ntimeline=1\n"
	if err := os.WriteFile(filepath.Join(dir, "backup.info"), []byte(info), 0o600); err != nil {
		t.Fatal(err)
	}
	age(t, s)
	return s
}

// A state saved by one Target and loaded by a new one (a restarted
// process) gives the answers of a cold read whatever happened to the
// catalog in between, reading xlog.db from the saved offset when it
// only grew.
func TestStateSaveLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name     string
		stopped  func(t *testing.T, s *server.Server) // while no process runs
		fullRead bool
		// reused: the saved listing is reused (meta/ and base/ kept
		// their identities).
		reused bool
	}{
		{"unchanged", func(*testing.T, *server.Server) {}, false, true},
		{"lines appended", func(t *testing.T, s *server.Server) {
			if err := s.XLogDB().Append(ctx, walsAt(1, 12, 14)...); err != nil {
				t.Fatal(err)
			}
		}, false, true},
		{"xlog.db rewritten (new inode)", func(t *testing.T, s *server.Server) {
			if _, err := s.XLogDB().Rewrite(ctx, func(w catalog.WALInfo) bool { return w.Name != segName(3) }); err != nil {
				t.Fatal(err)
			}
		}, true, true},
		{"xlog.db removed", func(t *testing.T, s *server.Server) {
			if err := os.Remove(s.XLogDB().Path()); err != nil {
				t.Fatal(err)
			}
		}, false, true},
		{"running backup finished (STARTED to DONE in place)", func(t *testing.T, s *server.Server) {
			writeLegacy(t, s, "20251203T000000", catalog.StatusDone, 2)
		}, false, true},
		{"newest backup finished (STARTED to DONE, meta/)", func(t *testing.T, s *server.Server) {
			saveBackup(t, s, "20260104T000000", catalog.StatusDone, 9, 10, 1)
		}, true, false},
		{"oldest backup marked FAILED (moves to meta/)", func(t *testing.T, s *server.Server) {
			saveBackup(t, s, "20251201T000000", catalog.StatusFailed, 2, 3, 1)
		}, true, false},
		{"backup added", func(t *testing.T, s *server.Server) {
			saveBackup(t, s, "20260105T000000", catalog.StatusDone, 10, 11, 1)
		}, true, false},
		{"backup removed", func(t *testing.T, s *server.Server) {
			if err := os.Remove(s.Layout().MetaBackupInfoPath("20260103T000000")); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"legacy backup removed", func(t *testing.T, s *server.Server) {
			if err := os.RemoveAll(s.Layout().BackupDirPath("20251201T000000")); err != nil {
				t.Fatal(err)
			}
		}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := stateCatalog(t)
			first := New(s)
			sameAsCold(t, "first process", s, first)
			if err := first.SaveState(); err != nil {
				t.Fatalf("SaveState: %v", err)
			}
			fi, err := os.Stat(first.StatePath())
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
			}
			savedGen := first.backups.gen

			tt.stopped(t, s)
			next := New(s)
			if err := next.LoadState(); err != nil {
				t.Fatalf("LoadState: %v", err)
			}
			sameAsCold(t, "after load", s, next)
			if full := next.wals.fullReads > 0; full != tt.fullRead {
				t.Errorf("full xlog.db read = %v, want %v", full, tt.fullRead)
			}
			if reused := next.backups.gen == savedGen+1; reused != tt.reused {
				t.Errorf("saved listing reused = %v, want %v (gen %d, saved %d)", reused, tt.reused, next.backups.gen, savedGen)
			}
			// The loaded target keeps working incrementally.
			_, err = os.Stat(s.XLogDB().Path())
			existed := err == nil
			if err := s.XLogDB().Append(ctx, walsAt(1, 20)...); err != nil {
				t.Fatal(err)
			}
			before := next.wals.fullReads
			sameAsCold(t, "append after load", s, next)
			if existed && next.wals.fullReads != before {
				t.Error("append after load caused a full xlog.db read")
			}
		})
	}
}

// reseal rewrites the checksum of a state file after a test changed it.
func reseal(data []byte) []byte {
	body := data[:len(data)-stateTrailer]
	return binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

func TestLoadStateUnusable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mangle func(data []byte) []byte
		want   string
	}{
		{"empty", func([]byte) []byte { return nil }, "not a probe state file"},
		{"garbage", func([]byte) []byte { return []byte("backup_label=None\nstatus=DONE\n") }, "not a probe state file"},
		{"truncated", func(d []byte) []byte { return d[:len(d)/2] }, "checksum"},
		{"bit flip", func(d []byte) []byte { d[len(d)/2] ^= 4; return d }, "checksum"},
		{"other version", func(d []byte) []byte {
			binary.LittleEndian.PutUint32(d[len(stateMagic):], stateVersion+1)
			return reseal(d)
		}, "format version"},
		{"other server", func(d []byte) []byte {
			d[stateHeader+2] = 'x' // "pg" → "px"
			return reseal(d)
		}, `server "px"`},
		{"other catalog path", func(d []byte) []byte {
			// The first path component of the backup dir, after "pg".
			i := stateHeader + 3 + strings.IndexByte(string(d[stateHeader+3:]), '/')
			d[i+1] = '#'
			return reseal(d)
		}, "catalog path"},
		{"trailing bytes", func(d []byte) []byte {
			d = append(d[:len(d)-stateTrailer:len(d)-stateTrailer], 0, 0, 0, 0, 0)
			return reseal(d)
		}, "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := stateCatalog(t)
			first := New(s)
			evaluate(t, first)
			if err := first.SaveState(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(first.StatePath())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(first.StatePath(), tt.mangle(data), 0o600); err != nil {
				t.Fatal(err)
			}
			next := New(s)
			err = next.LoadState()
			if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), first.StatePath()) {
				t.Fatalf("LoadState: %v; want ErrBadState naming the file and %q", err, tt.want)
			}
			sameAsCold(t, "after a refused state", s, next)
			if next.wals.fullReads != 1 {
				t.Errorf("a refused state left %d full reads, want 1 (cold)", next.wals.fullReads)
			}
		})
	}
}

func TestLoadStateMissing(t *testing.T) {
	t.Parallel()
	s := stateCatalog(t)
	tg := New(s)
	if err := tg.LoadState(); err != nil {
		t.Fatalf("LoadState without a file: %v", err)
	}
	sameAsCold(t, "cold start", s, tg)
}

// SaveState writes only when the caches changed (each durable write
// renames a new inode into place, so the inode tells).
func TestSaveStateOnlyWhenChanged(t *testing.T) {
	t.Parallel()
	s := stateCatalog(t)
	inode := func(tg *Target) uint64 {
		t.Helper()
		fi, err := os.Stat(tg.StatePath())
		if err != nil {
			t.Fatal(err)
		}
		_, ino := devIno(fi)
		return ino
	}
	save := func(tg *Target) {
		t.Helper()
		if err := tg.SaveState(); err != nil {
			t.Fatal(err)
		}
	}
	tg := New(s)
	save(tg) // nothing evaluated yet: nothing to save
	if _, err := os.Stat(tg.StatePath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("SaveState of an empty cache wrote a file: %v", err)
	}
	evaluate(t, tg)
	save(tg)
	ino := inode(tg)
	save(tg)
	evaluate(t, tg) // quiet catalog: only the restat position moves
	save(tg)
	if inode(tg) != ino {
		t.Fatal("SaveState rewrote an unchanged state")
	}
	if err := s.XLogDB().Append(context.Background(), walsAt(1, 30)...); err != nil {
		t.Fatal(err)
	}
	evaluate(t, tg)
	save(tg)
	if inode(tg) == ino {
		t.Fatal("SaveState did not write after xlog.db grew")
	}
	ino = inode(tg)

	// After a load, the restat position is saved once, then not again
	// until a round of slices went by.
	next := New(s)
	if err := next.LoadState(); err != nil {
		t.Fatal(err)
	}
	save(next)
	if inode(next) != ino {
		t.Fatal("SaveState right after LoadState rewrote the state")
	}
	evaluate(t, next)
	save(next)
	if inode(next) == ino {
		t.Fatal("restat position not saved after a load")
	}
	ino = inode(next)
	for i := range restatSlices {
		evaluate(t, next)
		save(next)
		if changed := inode(next) != ino; changed != (i == restatSlices-1) {
			t.Fatalf("evaluation %d after load: state rewritten = %v", i+2, changed)
		}
	}
}

// A catalog where the state cannot be written: the error is returned,
// nothing else breaks.
func TestSaveStateWriteError(t *testing.T) {
	t.Parallel()
	s := stateCatalog(t)
	tg := New(s)
	// A directory in the way fails the rename even as root (tests run as
	// root, which ignores permission bits).
	if err := os.Mkdir(tg.StatePath(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tg.StatePath(), "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	evaluate(t, tg)
	if err := tg.SaveState(); err == nil || !strings.Contains(err.Error(), tg.StatePath()) {
		t.Fatalf("SaveState over a directory: %v, want an error naming the file", err)
	}
	if err := New(s).LoadState(); err == nil || errors.Is(err, ErrBadState) {
		t.Fatalf("LoadState of a directory: %v, want a read error", err)
	}
	sameAsCold(t, "after a failed save", s, tg)
	entries, err := os.ReadDir(s.Layout().BackupDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), StateFileName[1:]) && e.Name() != StateFileName {
			t.Errorf("temp file %s left behind", e.Name())
		}
	}
}

func TestSaveStateConcurrent(t *testing.T) {
	t.Parallel()
	s := stateCatalog(t)
	tg := New(s)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 10 {
				switch i {
				case 0:
					if err := s.XLogDB().Append(context.Background(), walsAt(2, 100+j)...); err != nil {
						t.Error(err)
					}
				case 1:
					if err := tg.SaveState(); err != nil {
						t.Error(err)
					}
				default:
					if _, err := checks.Summary(context.Background(), tg); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if err := tg.SaveState(); err != nil {
		t.Fatal(err)
	}
	next := New(s)
	if err := next.LoadState(); err != nil {
		t.Fatal(err)
	}
	sameAsCold(t, "after concurrent saves", s, next)
	if next.wals.fullReads != 0 {
		t.Error("state saved after concurrent evaluations was not resumed")
	}
}

// The state encodes every field of checks.Backup: a new field must be
// added to stateEncoder.backup/stateDecoder.backup (and stateVersion
// bumped) before this count is updated.
func TestStateEncodesAllBackupFields(t *testing.T) {
	t.Parallel()
	if n := reflect.TypeFor[checks.Backup]().NumField(); n != 10 {
		t.Errorf("checks.Backup has %d fields; state.go encodes 10", n)
	}
}

func FuzzLoadState(f *testing.F) {
	s := stateCatalog(f)
	tg := New(s)
	evaluate(f, tg)
	if err := tg.SaveState(); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(tg.StatePath())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Add([]byte(stateMagic))
	l := s.Layout()
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = decodeState(data, l)
		// The checksum stops nearly every mutation: check the decoder
		// behind it too.
		if len(data) < stateHeader+stateTrailer {
			return
		}
		st, err := decodeState(reseal(data), l)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("decode error %v does not match ErrBadState", err)
			}
			return
		}
		for i, it := range st.items {
			if !catalog.IsBackupID(it.id) || (i > 0 && st.items[i-1].id >= it.id) {
				t.Fatalf("accepted bad items %v", st.items)
			}
		}
		if st.walValid && (st.acc == nil || int64(len(st.tail)) > st.offset) {
			t.Fatalf("accepted bad xlog.db position %d %q", st.offset, st.tail)
		}
	})
}

// writeSynthetic fills s's catalog like bench/check_test.go's
// writeSyntheticCatalog: nbackups legacy DONE backups and nlines xlog.db
// lines, one per segment.
func writeSynthetic(tb testing.TB, s *server.Server, nbackups, nlines int) {
	tb.Helper()
	l := s.Layout()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var xb strings.Builder
	for i := range nlines {
		fmt.Fprintf(&xb, "%s\t%d\t%.6f\tzstd\tNone\n", segName(i+1), 600000+i%1000, float64(base.Unix())+float64(i)*30)
	}
	if err := os.WriteFile(l.XLogDBPath(), []byte(xb.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	step := max(nlines/nbackups, 1)
	for b := range nbackups {
		begin := base.Add(time.Duration(b*step) * 30 * time.Second)
		seg := 1 + b*step
		info := fmt.Sprintf("backup_label=None\nbegin_offset=40\nbegin_time=%s\nbegin_wal=%s\nend_time=%s\nend_wal=%s\n"+
			"mode=postgres\nserver_name=pg\nsize=1073741824\nstatus=DONE\ntimeline=1\nversion=150018\nxlog_segment_size=16777216\n",
			begin.Format("2006-01-02 15:04:05.000000+00:00"), segName(seg),
			begin.Add(5*time.Minute).Format("2006-01-02 15:04:05.000000+00:00"), segName(min(seg+1, nlines)))
		dir := l.BackupDirPath(begin.Format("20060102T150405"))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "backup.info"), []byte(info), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	age(tb, s)
}

// BenchmarkLoadState: reading and decoding the state of 1000 backups and
// a WAL summary, and priming a Target with it.
func BenchmarkLoadState(b *testing.B) {
	s := newCatalogServer(b)
	writeSynthetic(b, s, 1000, 10_000)
	tg := New(s)
	evaluate(b, tg)
	if err := tg.SaveState(); err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(tg.StatePath())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size()), "state-bytes")
	b.ReportAllocs()
	for b.Loop() {
		if err := New(s).LoadState(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFirstEvaluation: the first Backups+WALSummary of a new Target
// on 1000 backups × 100k xlog.db lines, cold and after LoadState (the
// load included).
func BenchmarkFirstEvaluation(b *testing.B) {
	s := newCatalogServer(b)
	writeSynthetic(b, s, 1000, 100_000)
	tg := New(s)
	evaluate(b, tg)
	if err := tg.SaveState(); err != nil {
		b.Fatal(err)
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			evaluate(b, New(s))
		}
	})
	b.Run("loaded", func(b *testing.B) {
		for b.Loop() {
			tg := New(s)
			if err := tg.LoadState(); err != nil {
				b.Fatal(err)
			}
			evaluate(b, tg)
			if tg.wals.fullReads != 0 {
				b.Fatal("loaded target read xlog.db in full")
			}
		}
	})
}
