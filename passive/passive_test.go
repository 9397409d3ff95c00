package passive

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/lock"
)

const (
	id1 = "20240102T030405"
	id2 = "20240103T030405"
	id3 = "20240104T030405"
)

// standardPrimary: WAL 1..6, backup id1 (meta, begins at 2), id2 (legacy
// location, begins at 4), id3 FAILED.
func standardPrimary(e *env) {
	e.addWALs(1, 6)
	e.addBackup(id1, catalog.StatusDone, 2, false, 100000)
	e.addBackup(id2, catalog.StatusDone, 4, true, 100000)
	e.addBackup(id3, catalog.StatusFailed, 5, false, 1000)
}

func TestSyncInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	standardPrimary(e)
	ctx := t.Context()

	info, err := SyncInfo(ctx, e.primary, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.BackupIDs(); !slices.Equal(got, []string{id1, id2}) {
		t.Fatalf("backups = %v, want DONE only", got)
	}
	var names []string
	for _, w := range info.WALs {
		names = append(names, w.Name)
	}
	// WAL 1 precedes the first backup's begin_wal.
	if want := []string{segName(2), segName(3), segName(4), segName(5), segName(6)}; !slices.Equal(names, want) {
		t.Fatalf("wals = %v, want %v", names, want)
	}
	if info.LastName != segName(6) {
		t.Fatalf("last_name = %q", info.LastName)
	}
	xlog := readFile(t, catalog.OpenXLogDB(e.primary).Path())
	if want := int64(strings.LastIndex(strings.TrimSuffix(xlog, "\n"), "\n") + 1); info.LastPosition != want {
		t.Fatalf("last_position = %d, want %d (start of the last line)", info.LastPosition, want)
	}

	data, err := info.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"backups", "wals", "version", "config", "last_position", "last_name"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	b1 := doc["backups"].(map[string]any)[id1].(map[string]any)
	wantFields := map[string]any{
		"backup_id":      id1,
		"backup_type":    "full",
		"status":         "DONE",
		"begin_time":     "Tue Jan  2 03:04:05 2024",
		"begin_time_iso": "2024-01-02T03:04:05.123456+01:00",
		"end_time_iso":   "2024-01-02T03:05:35.123456+01:00",
		"begin_wal":      segName(2),
		"begin_offset":   40.0,
		"encryption":     nil,
		"tablespaces":    []any{[]any{"ts1", 16385.0, "/srv/ts1"}},
	}
	for k, want := range wantFields {
		gotJSON, _ := json.Marshal(b1[k])
		wantJSON, _ := json.Marshal(want)
		if string(gotJSON) != string(wantJSON) {
			t.Errorf("backups.%s.%s = %s, want %s", id1, k, gotJSON, wantJSON)
		}
	}
	w0 := doc["wals"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "size", "time", "compression", "encryption"} {
		if _, ok := w0[k]; !ok {
			t.Errorf("wal entry lacks %q", k)
		}
	}

	back, err := ParseInfo(data)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.WALs, info.WALs) || back.LastName != info.LastName || back.LastPosition != info.LastPosition {
		t.Fatalf("round trip changed WALs/position: %+v", back)
	}
	for id, b := range info.Backups {
		if got, want := string(back.Backups[id].Marshal()), string(b.Marshal()); got != want {
			t.Errorf("backup %s round trip:\n%s\nwant\n%s", id, got, want)
		}
	}
}

func TestSyncInfoResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	standardPrimary(e)
	ctx := t.Context()
	first, err := SyncInfo(ctx, e.primary, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	e.addWALs(7, 8)
	tests := []struct {
		name    string
		lastWAL string
		pos     int64
		want    []string
		wantErr error
	}{
		{"from position", first.LastName, first.LastPosition, []string{segName(7), segName(8)}, nil},
		{"position mismatch rescans", segName(5), first.LastPosition, []string{segName(6), segName(7), segName(8)}, nil},
		{"position past end rescans", segName(6), 1 << 20, []string{segName(7), segName(8)}, nil},
		{"nothing new", segName(8), 0, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := SyncInfo(ctx, e.primary, tc.lastWAL, tc.pos)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var names []string
			for _, w := range info.WALs {
				names = append(names, w.Name)
			}
			if !slices.Equal(names, tc.want) {
				t.Fatalf("wals = %v, want %v", names, tc.want)
			}
			if info.LastName != segName(8) {
				t.Fatalf("last_name = %q", info.LastName)
			}
		})
	}
	// Retention removed WAL 1..3: a passive stuck at 2 is told so.
	if _, err := catalog.OpenXLogDB(e.primary).Rewrite(ctx, func(w catalog.WALInfo) bool { return w.Name > segName(3) }); err != nil {
		t.Fatal(err)
	}
	if _, err := SyncInfo(ctx, e.primary, segName(2), 0); !errors.Is(err, ErrWALOutOfRange) {
		t.Fatalf("err = %v, want ErrWALOutOfRange", err)
	}
}

// primaryXLogFrom returns the primary's xlog.db lines from segment seg on.
func primaryXLogFrom(t *testing.T, e *env, seg int) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.SplitAfter(readFile(t, catalog.OpenXLogDB(e.primary).Path()), "\n") {
		if line != "" && line[:24] >= segName(seg) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func checkBackupSynced(t *testing.T, e *env, id string) {
	t.Helper()
	compareTrees(t, filterInfo(tree(t, e.primary.BackupDirPath(id))), tree(t, e.passive.BackupDirPath(id)), "base/"+id)
	// backup.info byte for byte (from the primary's meta or legacy file).
	if got, want := readFile(t, e.passive.MetaBackupInfoPath(id)), readFile(t, e.primary.BackupInfoPath(id)); got != want {
		t.Errorf("backup %s backup.info:\n%s\nwant\n%s", id, got, want)
	}
}

// filterInfo drops the legacy backup.info, which the passive keeps in meta/.
func filterInfo(m map[string]string) map[string]string {
	delete(m, "backup.info")
	return m
}

func TestSyncCronEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	standardPrimary(e)
	ctx := t.Context()

	rep, err := SyncCron(ctx, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Synced, []string{id1, id2}) {
		t.Fatalf("synced %v", rep.Synced)
	}
	checkBackupSynced(t, e, id1)
	checkBackupSynced(t, e, id2)
	if _, err := os.Stat(e.passive.BackupDirPath(id3)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("FAILED primary backup copied: %v", err)
	}
	if got, want := readFile(t, catalog.OpenXLogDB(e.passive).Path()), primaryXLogFrom(t, e, 2); got != want {
		t.Fatalf("passive xlog.db:\n%s\nwant\n%s", got, want)
	}
	compareTrees(t, without(tree(t, e.primary.WalsDir), catalog.XLogDBName(testServer), filepath.Join("0000000100000000", segName(1))),
		without(tree(t, e.passive.WalsDir), catalog.XLogDBName(testServer), "sync-wals.info"), "wals")
	if _, err := os.Stat(e.passive.PrimaryInfoPath()); err != nil {
		t.Fatal(err)
	}
	if s, n, err := Lag(e.passive); err != nil || s != 0 || n != 0 {
		t.Fatalf("Lag = %v, %v, %v; want 0, 0", s, n, err)
	}

	// New WAL on the primary: the second pass appends only those.
	e.addWALs(7, 9)
	if err := WritePrimaryInfo(e.passive, mustInfo(t, e, segName(6))); err != nil {
		t.Fatal(err)
	}
	if s, n, err := Lag(e.passive); err != nil || n != 3 || s != 180 {
		t.Fatalf("Lag = %v, %v, %v; want 180 s, 3 segments", s, n, err)
	}
	before := readFile(t, catalog.OpenXLogDB(e.passive).Path())
	rep, err = SyncCron(ctx, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Synced) != 0 || rep.WALs.Copied != 3 {
		t.Fatalf("second pass: %+v", rep)
	}
	after := readFile(t, catalog.OpenXLogDB(e.passive).Path())
	if !strings.HasPrefix(after, before) || after != primaryXLogFrom(t, e, 2) {
		t.Fatalf("xlog.db after second pass:\n%s", after)
	}
	if got := readFile(t, e.passive.SyncWALsInfoPath()); !strings.HasPrefix(got, segName(9)+"\t") {
		t.Fatalf("sync-wals.info = %q", got)
	}
}

func mustInfo(t *testing.T, e *env, last string) *Info {
	t.Helper()
	info, err := SyncInfo(t.Context(), e.primary, last, 0)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func without(m map[string]string, keys ...string) map[string]string {
	for _, k := range keys {
		delete(m, k)
	}
	return m
}

func TestSyncBackupKilledResumes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addWALs(1, 3)
	// Files are sent in name order: the 4 MiB tablespace file (16385/...)
	// first, then data/base/1/1259 (3 MiB); at 4 MiB/s the kill lands
	// between the two.
	e.addBackup(id1, catalog.StatusDone, 2, false, 3<<20)
	big := filepath.Join(e.primary.BackupDirPath(id1), "16385", "PG_15_202209061", "5", "16386")
	if err := os.WriteFile(big, randBytes("big", 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	rewriteManifest(t, e, id1)
	info := mustInfo(t, e, "")
	if err := WritePrimaryInfo(e.passive, info); err != nil {
		t.Fatal(err)
	}

	opts, _ := json.Marshal(subOptions{Server: testServer, SSH: e.opts.PrimarySSHCommand, Remote: e.opts.RemoteCellar, Config: e.opts.RemoteConfig, Layout: e.passive, KBps: 4096})
	cmd := exec.Command(e.testExec, "-test.run=^$")
	cmd.Env = append(os.Environ(), "PASSIVE_TEST_MODE=sync-backup", "PASSIVE_TEST_ID="+id1, "PASSIVE_TEST_OPTS="+string(opts))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := filepath.Join(e.passive.BackupDirPath(id1), "16385", "PG_15_202209061", "5", "16386")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(done); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Fatal("sync-backup never wrote its first big file")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var st1 syscall.Stat_t
	if err := syscall.Stat(done, &st1); err != nil {
		t.Fatal(err)
	}
	// kill -9 the whole group (the passive, sh, fake ssh and the sender).
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()

	b, err := catalog.Open(e.passive).Get(id1)
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != catalog.StatusSyncing {
		t.Fatalf("status after kill = %s, want SYNCING", b.Status)
	}
	if _, err := os.Stat(filepath.Join(e.passive.BackupDirPath(id1), "data", "base", "1", "1259")); err == nil {
		t.Fatal("the kill came too late: the whole backup was already copied")
	}

	if err := SyncBackup(t.Context(), e.opts, id1); err != nil {
		t.Fatal(err)
	}
	checkBackupSynced(t, e, id1)
	var st2 syscall.Stat_t
	if err := syscall.Stat(done, &st2); err != nil {
		t.Fatal(err)
	}
	if st1.Ino != st2.Ino {
		t.Error("a file completed before the kill was copied again")
	}
}

// rewriteManifest rewrites a backup's manifest after its files changed.
func rewriteManifest(t *testing.T, e *env, id string) {
	t.Helper()
	dir := e.primary.BackupDirPath(id)
	files := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "backup.info" || rel == filepath.Join("data", "backup_manifest") {
			return nil
		}
		data, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	writeManifest(t, dir, files)
}

func TestSyncBackupVerifiesManifest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addWALs(1, 3)
	e.addBackup(id1, catalog.StatusDone, 2, false, 5000)
	// Corrupt a file on the primary after its manifest was written.
	p := filepath.Join(e.primary.BackupDirPath(id1), "data", "base", "1", "2608")
	data, _ := os.ReadFile(p)
	data[100] ^= 0xff
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WritePrimaryInfo(e.passive, mustInfo(t, e, "")); err != nil {
		t.Fatal(err)
	}
	err := SyncBackup(t.Context(), e.opts, id1)
	if !errors.Is(err, ErrSyncVerify) {
		t.Fatalf("err = %v, want ErrSyncVerify", err)
	}
	b, gerr := catalog.Open(e.passive).Get(id1)
	if gerr != nil {
		t.Fatal(gerr)
	}
	if b.Status != catalog.StatusFailed || !strings.HasPrefix(b.Error, "failure syncing server pg backup "+id1+": ") {
		t.Fatalf("local backup: %s %q", b.Status, b.Error)
	}
}

func TestObsoleteBackupRemoved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	standardPrimary(e)
	ctx := t.Context()
	if _, err := SyncCron(ctx, e.opts); err != nil {
		t.Fatal(err)
	}
	// id1 deleted on the primary; locally FAILED -> removed. id2 deleted
	// on the primary but DONE locally -> kept.
	cat := catalog.Open(e.passive)
	b, err := cat.Get(id1)
	if err != nil {
		t.Fatal(err)
	}
	b.Status = catalog.StatusFailed
	if err := cat.Save(b); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{id1, id2} {
		_ = os.RemoveAll(e.primary.BackupDirPath(id))
		_ = os.Remove(e.primary.MetaBackupInfoPath(id))
	}
	// A SYNCING leftover of a killed sync, gone from the primary too.
	ghost := catalog.NewBackupInfo("20240105T000000")
	ghost.Status = catalog.StatusSyncing
	if err := cat.Save(ghost); err != nil {
		t.Fatal(err)
	}
	rep, err := SyncCron(ctx, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Removed, []string{id1, ghost.ID}) {
		t.Fatalf("removed %v", rep.Removed)
	}
	if _, err := cat.Get(id1); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("id1 still there: %v", err)
	}
	if _, err := os.Stat(e.passive.BackupDirPath(id1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("id1 directory still there: %v", err)
	}
	if b, err := cat.Get(id2); err != nil || b.Status != catalog.StatusDone {
		t.Fatalf("id2: %v %v", b, err)
	}
}

func TestCheckSyncRequired(t *testing.T) {
	t.Parallel()
	layout := catalog.NewLayout(testServer, t.TempDir(), t.TempDir())
	primary := &Info{Backups: map[string]*catalog.BackupInfo{id1: {ID: id1, Status: catalog.StatusDone}}}
	withStatus := func(id string, s catalog.Status) *catalog.BackupInfo { return &catalog.BackupInfo{ID: id, Status: s} }
	tests := []struct {
		name     string
		id       string
		local    *catalog.BackupInfo
		obsolete bool
		want     error
	}{
		{"on primary, missing locally", id1, nil, false, nil},
		{"on primary, FAILED locally", id1, withStatus(id1, catalog.StatusFailed), false, nil},
		{"on primary, stale SYNCING locally", id1, withStatus(id1, catalog.StatusSyncing), false, nil},
		{"on primary, DONE locally", id1, withStatus(id1, catalog.StatusDone), false, ErrSyncNothingToDo},
		{"on primary, obsolete", id1, nil, true, ErrSyncNothingToDo},
		{"nowhere", id2, nil, false, ErrSyncNotOnPrimary},
		{"gone, DONE locally", id2, withStatus(id2, catalog.StatusDone), false, ErrSyncNothingToDo},
		{"gone, FAILED locally", id2, withStatus(id2, catalog.StatusFailed), false, ErrSyncToBeDeleted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obs := func(*catalog.BackupInfo) bool { return tc.obsolete }
			if err := CheckSyncRequired(layout, tc.id, primary, tc.local, obs); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// A SYNCING backup whose lock is held is a sync in progress.
	lk, err := lock.TryLock(layout.LockPath(syncLockTask(id1)))
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()
	if err := CheckSyncRequired(layout, id1, primary, withStatus(id1, catalog.StatusSyncing), nil); !errors.Is(err, ErrSyncNothingToDo) {
		t.Fatalf("held SYNCING: err = %v", err)
	}
}

func TestSyncWALsCrashBeforeInfoUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	standardPrimary(e)
	ctx := t.Context()
	if _, err := SyncCron(ctx, e.opts); err != nil {
		t.Fatal(err)
	}
	want := readFile(t, catalog.OpenXLogDB(e.passive).Path())
	state, err := LoadSyncWALsInfo(e.passive)
	if err != nil {
		t.Fatal(err)
	}

	e.addWALs(7, 8)
	if err := WritePrimaryInfo(e.passive, mustInfo(t, e, state.LastWAL)); err != nil {
		t.Fatal(err)
	}
	// Crash 1: files copied but nothing else (xlog.db and sync-wals.info
	// unchanged). Crash 2: files and xlog.db lines, but sync-wals.info not
	// yet updated. Both must converge to the same state on re-run.
	if _, err := SyncWALs(ctx, e.opts); err != nil {
		t.Fatal(err)
	}
	full := readFile(t, catalog.OpenXLogDB(e.passive).Path())
	if full != primaryXLogFrom(t, e, 2) {
		t.Fatalf("xlog.db:\n%s", full)
	}
	for _, crash := range []string{"after copy", "after xlog.db append"} {
		if err := WriteSyncWALsInfo(e.passive, state); err != nil {
			t.Fatal(err)
		}
		if crash == "after copy" {
			if err := os.WriteFile(catalog.OpenXLogDB(e.passive).Path(), []byte(want), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		res, err := SyncWALs(ctx, e.opts)
		if err != nil {
			t.Fatalf("%s: %v", crash, err)
		}
		if res.Copied != 2 {
			t.Errorf("%s: copied %d, want the 2 WALs re-fetched", crash, res.Copied)
		}
		if got := readFile(t, catalog.OpenXLogDB(e.passive).Path()); got != full {
			t.Errorf("%s: xlog.db:\n%s\nwant\n%s", crash, got, full)
		}
		if got, _ := LoadSyncWALsInfo(e.passive); got.LastWAL != segName(8) {
			t.Errorf("%s: sync-wals.info = %+v", crash, got)
		}
	}
}

func TestSyncWALsRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.addWALs(1, 4)
	e.addBackup(id1, catalog.StatusDone, 2, false, 1000)
	ctx := t.Context()
	if err := WritePrimaryInfo(e.passive, mustInfo(t, e, "")); err != nil {
		t.Fatal(err)
	}
	// No local backup yet: skipped, position not advanced.
	res, err := SyncWALs(ctx, e.opts)
	if err != nil || res.Skipped == "" {
		t.Fatalf("res = %+v, err = %v; want skipped", res, err)
	}
	if _, err := os.Stat(e.passive.SyncWALsInfoPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("sync-wals.info written by a skipped pass")
	}
	// Compression must match.
	opts := e.opts
	opts.Compression = "gzip"
	opts.RemoteCellar = "PASSIVE_TEST_COMPRESSION=zstd " + opts.RemoteCellar
	info, err := FetchInfo(ctx, opts, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePrimaryInfo(e.passive, info); err != nil {
		t.Fatal(err)
	}
	if _, err := SyncWALs(ctx, opts); !errors.Is(err, ErrCompressionMismatch) {
		t.Fatalf("err = %v, want ErrCompressionMismatch", err)
	}
	// Not passive.
	opts.PrimarySSHCommand = ""
	if _, err := SyncWALs(ctx, opts); !errors.Is(err, ErrNotPassive) {
		t.Fatalf("err = %v, want ErrNotPassive", err)
	}
}

func TestRemoteFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	opts := e.opts
	opts.RemoteCellar = "false"
	_, err := FetchInfo(t.Context(), opts, "", 0)
	if !errors.Is(err, ErrRemote) {
		t.Fatalf("err = %v, want ErrRemote", err)
	}
	// Cancelling kills the remote side.
	opts.RemoteCellar = "sleep 30;"
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := FetchInfo(ctx, opts, "", 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestShellQuote(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"sync-info", "sync-info"},
		{"/etc/cellar/config.yaml", "/etc/cellar/config.yaml"},
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$(rm -rf /)", "'$(rm -rf /)'"},
	}
	for _, tc := range tests {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %q, want %q", tc.in, got, tc.want)
		}
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(tc.in)).Output()
		if err != nil || string(out) != tc.in {
			t.Errorf("sh sees %q (err %v), want %q", out, err, tc.in)
		}
	}
}

func TestSyncWALsInfoFile(t *testing.T) {
	t.Parallel()
	layout := catalog.NewLayout(testServer, t.TempDir(), t.TempDir())
	if s, err := LoadSyncWALsInfo(layout); err != nil || s != (SyncWALsInfo{}) {
		t.Fatalf("missing file: %+v %v", s, err)
	}
	want := SyncWALsInfo{LastWAL: segName(7), LastPosition: 1234}
	if err := WriteSyncWALsInfo(layout, want); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, layout.SyncWALsInfoPath()); got != segName(7)+"\t1234" {
		t.Fatalf("file = %q", got)
	}
	if got, err := LoadSyncWALsInfo(layout); err != nil || got != want {
		t.Fatalf("got %+v %v", got, err)
	}
	if err := os.WriteFile(layout.SyncWALsInfoPath(), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSyncWALsInfo(layout); err == nil {
		t.Fatal("garbage accepted")
	}
}
