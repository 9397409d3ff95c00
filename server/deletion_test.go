package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/durable/faultfs"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/wal"
)

func segName(i int) string { return wal.NameForSegNo(1, uint64(i), wal.DefaultSegmentSize).String() }

// walOnDisk lists the archived WAL files in wals/ by name.
func walOnDisk(t *testing.T, s *Server) []string {
	t.Helper()
	paths, err := catalog.WALPathsInDir(t.Context(), s.Layout().WalsDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	slices.Sort(out)
	return out
}

// TestRetentionStopsOnUnreadableBackupInfo: three backups, the oldest
// kept (keep: full, so it needs every later WAL), REDUNDANCY 1. When the
// oldest's backup.info is truncated or does not parse, retention (dry run
// included) and manual deletes fail naming the file and delete nothing;
// once the file is back, the oldest backup still has all its WAL.
func TestRetentionStopsOnUnreadableBackupInfo(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(data []byte) []byte
	}{
		{"truncated to 300 bytes", func(d []byte) []byte { return d[:300] }},
		{"unparsable", func([]byte) []byte { return []byte("{\"status\": \"DONE\"}\n") }},
		{"empty", func([]byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fakeCatalog(t, "REDUNDANCY 1", 3)
			oldest := "20261101T030000"
			if err := s.Keep(oldest, catalog.KeepFull); err != nil {
				t.Fatal(err)
			}
			path := s.Layout().MetaBackupInfoPath(oldest)
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			walBefore := walOnDisk(t, s)
			if err := os.WriteFile(path, tc.damage(good), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, dry := range []bool{true, false} {
				_, _, err := s.EnforceRetention(t.Context(), dry, nil)
				if !errors.Is(err, ErrUnreadableBackup) || !strings.Contains(err.Error(), path) {
					t.Fatalf("retention (dry run %v) on an unreadable backup.info: %v", dry, err)
				}
			}
			if err := s.DeleteBackup(t.Context(), "20261102T030000", nil); !errors.Is(err, ErrUnreadableBackup) {
				t.Fatalf("delete with an unreadable backup.info elsewhere: %v", err)
			}
			if _, err := s.GetBackup("20261102T030000"); err != nil {
				t.Fatalf("a backup was deleted: %v", err)
			}
			if got := walOnDisk(t, s); !slices.Equal(got, walBefore) {
				t.Fatalf("WAL removed while a backup.info was unreadable: %v, was %v", got, walBefore)
			}
			if err := os.WriteFile(path, good, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.EnforceRetention(t.Context(), false, nil); err != nil {
				t.Fatal(err)
			}
			names := walNames(t, s)
			for i := 1; i <= 8; i++ {
				if !slices.Contains(names, segName(i)) {
					t.Fatalf("kept backup %s lost WAL %s: %v", oldest, segName(i), names)
				}
			}
		})
	}
}

// holdShared makes a separate process (flock(1)) hold path shared, as a
// restore holds a backup lock, and returns its PID.
func holdShared(t *testing.T, path string) int {
	t.Helper()
	cmd := exec.Command("flock", "--shared", "--nonblock", path, "-c", "echo locked; exec sleep 60")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("flock did not take %s: %q %v", path, buf, err)
	}
	return cmd.Process.Pid
}

// TestDeleteRefusesBackupBeingRestored: a real process holds a backup lock
// shared (as a restore does); delete refuses naming it, retention skips
// that backup and reports it but deletes the others.
func TestDeleteRefusesBackupBeingRestored(t *testing.T) {
	s := fakeCatalog(t, "REDUNDANCY 1", 3)
	restored := "20261101T030000"
	pid := holdShared(t, s.Layout().BackupLockPath(restored))

	err := s.DeleteBackup(t.Context(), restored, nil)
	want := fmt.Sprintf("backup %s is being restored by PID %d", restored, pid)
	if !errors.Is(err, lock.ErrBusy) || !strings.Contains(err.Error(), want) {
		t.Fatalf("delete of a backup being restored: %v, want %q", err, want)
	}
	if b, err := s.GetBackup(restored); err != nil || b.Status != catalog.StatusDone {
		t.Fatalf("refused delete changed the backup: %v %v", b, err)
	}

	var out strings.Builder
	deleted, _, err := s.EnforceRetention(t.Context(), false, &out)
	if err != nil || !slices.Equal(deleted, []string{"20261102T030000"}) {
		t.Fatalf("retention: deleted %v, %v", deleted, err)
	}
	if !strings.Contains(out.String(), want) {
		t.Fatalf("retention did not report the skipped backup:\n%s", out.String())
	}
	if b, err := s.GetBackup(restored); err != nil || b.Status != catalog.StatusDone {
		t.Fatalf("retention touched a backup being restored: %v %v", b, err)
	}
}

// deletionScenario is one catalog operation run under fault injection,
// with what it must leave once finished.
type deletionScenario struct {
	name    string
	policy  string
	run     func(ctx context.Context, s *Server) error
	targets []string // backups the operation deletes
	wantWAL []string // WAL left once it is complete
}

func deletionScenarios() []deletionScenario {
	all := func(from, to int) []string {
		var out []string
		for i := from; i <= to; i++ {
			out = append(out, segName(i))
		}
		return append(out, "00000002.history")
	}
	return []deletionScenario{
		{name: "delete", policy: "REDUNDANCY 3",
			run: func(ctx context.Context, s *Server) error {
				return s.DeleteBackup(ctx, "20261101T030000", nil)
			},
			targets: []string{"20261101T030000"}, wantWAL: all(3, 8)},
		{name: "retention with prune", policy: "REDUNDANCY 1",
			run: func(ctx context.Context, s *Server) error {
				_, _, err := s.EnforceRetention(ctx, false, nil)
				return err
			},
			targets: []string{"20261101T030000", "20261102T030000"}, wantWAL: all(5, 8)},
	}
}

// TestDeletionUnderFaultInjection fails every mutation of a delete and of
// a retention run in turn. After each failure the catalog must tell the
// truth: every backup listed DONE is intact with all the WAL it needs, a
// backup part-deleted is listed DELETING (or not at all), and xlog.db
// never lists a missing file. The next pass, as the daemon runs it
// (FinishDeletions, then retention), must complete the deletion and leave
// wals/ and xlog.db in agreement.
func TestDeletionUnderFaultInjection(t *testing.T) {
	for _, sc := range deletionScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			counter := faultfs.New(0)
			s := fakeCatalog(t, sc.policy, 3)
			s.SetOps(counter)
			if err := sc.run(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			n := len(counter.Calls())
			if n < 8 {
				t.Fatalf("only %d mutations counted: %v", n, counter.Calls())
			}
			checkFinished(t, s, sc)
			for i := 1; i <= n; i++ {
				t.Run(fmt.Sprintf("fail %d of %d", i, n), func(t *testing.T) {
					fs := faultfs.New(i)
					s := fakeCatalog(t, sc.policy, 3)
					s.SetOps(fs)
					err := sc.run(t.Context(), s)
					if !fs.Failed() {
						t.Fatalf("mutation %d never happened (%v)", i, fs.Calls())
					}
					if err == nil {
						t.Logf("failure of %v was absorbed", fs.Calls()[i-1])
					}
					checkTruth(t, s, sc)
					next := fakeServerLike(t, s)
					if _, err := next.FinishDeletions(t.Context(), nil); err != nil {
						t.Fatalf("next pass: %v", err)
					}
					if _, _, err := next.EnforceRetention(t.Context(), false, nil); err != nil {
						t.Fatalf("next retention pass: %v", err)
					}
					if b, err := next.GetBackup(sc.targets[0]); err == nil && b.Status == catalog.StatusDone {
						// The failure came before the delete_this marker:
						// the backup was left whole (checkTruth saw it
						// intact) and a delete must be asked for again.
						if err := sc.run(t.Context(), next); err != nil {
							t.Fatalf("rerun: %v", err)
						}
					}
					checkFinished(t, next, sc)
				})
			}
		})
	}
}

// fakeServerLike is a fresh server over s's catalog, with the real Ops.
func fakeServerLike(t *testing.T, s *Server) *Server {
	t.Helper()
	n := *s
	n.SetOps(durable.OS())
	return &n
}

// checkTruth asserts what the catalog shows after a failed operation.
func checkTruth(t *testing.T, s *Server, sc deletionScenario) {
	t.Helper()
	all, err := s.Catalog().Backups()
	if err != nil {
		t.Fatalf("catalog unreadable after a failure: %v", err)
	}
	listed := walNames(t, s)
	onDisk := walOnDisk(t, s)
	for _, n := range listed {
		if !slices.Contains(onDisk, n) {
			t.Fatalf("xlog.db lists %s, which is gone", n)
		}
	}
	seen := map[string]bool{}
	for _, b := range all {
		seen[b.ID] = true
		switch b.Status {
		case catalog.StatusDeleting:
			if !slices.Contains(sc.targets, b.ID) {
				t.Fatalf("backup %s is being deleted but was not a target", b.ID)
			}
		case catalog.StatusDone:
			checkIntact(t, s, b, listed, onDisk)
		default:
			t.Fatalf("backup %s shows status %s", b.ID, b.Status)
		}
	}
	for _, id := range []string{"20261101T030000", "20261102T030000", "20261103T030000"} {
		if !seen[id] && !slices.Contains(sc.targets, id) {
			t.Fatalf("backup %s vanished", id)
		}
	}
}

// checkIntact: a DONE backup has its data and every WAL from its
// begin_wal on, listed and on disk.
func checkIntact(t *testing.T, s *Server, b *catalog.BackupInfo, listed, onDisk []string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(s.Layout().BackupDataDir(b.ID), "PG_VERSION")); err != nil {
		t.Fatalf("backup %s is shown DONE but its data is gone: %v", b.ID, err)
	}
	for i := 1; i <= 8; i++ {
		n := segName(i)
		if n < b.BeginWAL {
			continue
		}
		if !slices.Contains(listed, n) || !slices.Contains(onDisk, n) {
			t.Fatalf("backup %s is shown DONE but WAL %s is missing (listed %v, on disk %v)", b.ID, n, slices.Contains(listed, n), slices.Contains(onDisk, n))
		}
	}
}

// checkFinished asserts the state once the operation is complete.
func checkFinished(t *testing.T, s *Server, sc deletionScenario) {
	t.Helper()
	all, err := s.Catalog().Backups()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range all {
		if slices.Contains(sc.targets, b.ID) || b.Status != catalog.StatusDone {
			t.Fatalf("after the next pass backup %s is %s", b.ID, b.Status)
		}
	}
	for _, id := range sc.targets {
		if _, err := os.Stat(s.Layout().BackupDirPath(id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("base/%s left behind: %v", id, err)
		}
	}
	if ids, err := s.Catalog().PendingDeletions(); err != nil || len(ids) > 0 {
		t.Fatalf("delete_this markers left: %v %v", ids, err)
	}
	listed := walNames(t, s)
	slices.Sort(listed)
	want := slices.Sorted(slices.Values(sc.wantWAL))
	if got := walOnDisk(t, s); !slices.Equal(got, want) || !slices.Equal(listed, want) {
		t.Fatalf("WAL after the next pass: on disk %v, xlog.db %v, want %v", got, listed, want)
	}
}

// TestReconcileWAL: files in wals/ that xlog.db does not list (a prune
// interrupted between its rewrite and its removals, or a lost line) are
// removed when no backup needs them and listed again otherwise; a second
// pass changes nothing.
func TestReconcileWAL(t *testing.T) {
	s := fakeCatalog(t, "REDUNDANCY 3", 3)
	// Backups begin at segments 1, 3 and 5: make the oldest go, as an
	// interrupted delete leaves it (unlisted segments 1 and 2 on disk).
	if err := s.Catalog().MarkDeleteThis("20261101T030000"); err != nil {
		t.Fatal(err)
	}
	unlist := map[string]bool{segName(1): true, segName(2): true, segName(6): true}
	if _, err := s.XLogDB().Rewrite(t.Context(), func(w catalog.WALInfo) bool { return !unlist[w.Name] }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.FinishDeletions(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	want := []string{segName(3), segName(4), segName(5), segName(6), segName(7), segName(8), "00000002.history"}
	slices.Sort(want)
	listed := walNames(t, s)
	slices.Sort(listed)
	if got := walOnDisk(t, s); !slices.Equal(got, want) || !slices.Equal(listed, want) {
		t.Fatalf("after reconciling: wals/ %v, xlog.db %v, want %v", got, listed, want)
	}
	removed, reindexed, err := s.ReconcileWAL(t.Context())
	if err != nil || removed != 0 || reindexed != 0 {
		t.Fatalf("second pass: removed %d, reindexed %d, %v", removed, reindexed, err)
	}
}
