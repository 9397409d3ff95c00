package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// killFixture is a synthetic catalog on real files: three DONE backups
// whose PGDATA copies hold filesPerBackup files each (a fresh PG15
// cluster has about 1,500), and the archived WAL they need.
type killFixture struct {
	cfg    string
	layout catalog.Layout
	ids    []string
	begin  []int // begin segment of each backup
	nWAL   int
}

const filesPerBackup = 1500

func killSeg(i int) string { return wal.NameForSegNo(1, uint64(i), wal.DefaultSegmentSize).String() }

func newKillFixture(t *testing.T, policy string) *killFixture {
	t.Helper()
	home := t.TempDir()
	f := &killFixture{layout: catalog.NewLayout("pg", filepath.Join(home, "pg"), home), nWAL: 30}
	if err := f.layout.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	f.cfg = filepath.Join(home, "cellar.yaml")
	cfg := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n    retention_policy: %s\n", home, deadConninfo(t), policy)
	if err := os.WriteFile(f.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	f.writeWAL(t)
	base := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	for i := range 3 {
		f.writeBackup(t, base.Add(time.Duration(i)*24*time.Hour), 10*i+1)
	}
	return f
}

func (f *killFixture) writeWAL(t *testing.T) {
	t.Helper()
	var infos []catalog.WALInfo
	for i := 1; i <= f.nWAL; i++ {
		n, _ := wal.ParseName(killSeg(i))
		p := f.layout.WALPath(n)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(n.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		infos = append(infos, catalog.WALInfo{Name: n.String(), Size: 24, Time: float64(1700000000 + i)})
	}
	if err := catalog.OpenXLogDB(f.layout).Append(t.Context(), infos...); err != nil {
		t.Fatal(err)
	}
}

func (f *killFixture) writeBackup(t *testing.T, begin time.Time, seg int) {
	t.Helper()
	b := catalog.NewBackupInfo(catalog.NewBackupID(begin))
	b.Status = catalog.StatusDone
	b.BeginTime, b.EndTime = begin, begin.Add(time.Minute)
	b.BeginWAL, b.EndWAL = killSeg(seg), killSeg(seg+1)
	b.Timeline, b.Version, b.XLogSegmentSize = 1, 150018, int64(wal.DefaultSegmentSize)
	b.Mode, b.ServerName, b.Size = "postgres", "pg", catalog.Int64(filesPerBackup)
	if err := catalog.Open(f.layout).Save(b); err != nil {
		t.Fatal(err)
	}
	data := f.layout.BackupDataDir(b.ID)
	for i := range filesPerBackup {
		dir := filepath.Join(data, "base", fmt.Sprint(i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f.ids = append(f.ids, b.ID)
	f.begin = append(f.begin, seg)
}

// intact reports whether every data file of backup i is there.
func (f *killFixture) intact(i int) bool {
	n := 0
	_ = filepath.WalkDir(filepath.Join(f.layout.BackupDataDir(f.ids[i]), "base"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n == filesPerBackup
}

// walState returns xlog.db's names and the files in wals/, sorted.
func (f *killFixture) walState(t *testing.T) (listed, onDisk []string) {
	t.Helper()
	if err := catalog.OpenXLogDB(f.layout).Scan(t.Context(), func(w catalog.WALInfo) error {
		listed = append(listed, w.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	paths, err := catalog.WALPathsInDir(t.Context(), f.layout.WalsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		onDisk = append(onDisk, filepath.Base(p))
	}
	slices.Sort(listed)
	slices.Sort(onDisk)
	return listed, onDisk
}

// killTrial is one kill -9 of a real cellar process.
type killTrial struct {
	args    []string // after -c cfg
	policy  string   // retention_policy of the server
	targets int      // the oldest backups it deletes
}

// runKillTrials kills a real `cellar` process at a random point after its
// first delete_this marker appeared, then checks what list-backups,
// show-backup, check-backup and check tell, and that one cron pass
// completes the deletion.
func runKillTrials(t *testing.T, bin string, tr killTrial, trials int) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	killed := 0
	for i := range trials {
		f := newKillFixture(t, tr.policy)
		marker := filepath.Join(f.layout.MetaDir, f.ids[0]+"-"+catalog.AnnotationDeleteThis)
		cmd := exec.Command(bin, append([]string{"-c", f.cfg}, tr.args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfterMarker(cmd, marker, rng.IntN(4000))
		_ = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		}
		checkAfterKill(t, f, tr, i)
		if _, errOut, code := runCLI(t, "-c", f.cfg, "cron"); code != 0 {
			t.Fatalf("trial %d: cron exit %d: %s", i, code, errOut)
		}
		checkCompleted(t, f, tr, i)
	}
	t.Logf("%d of %d trials killed the process mid-way", killed, trials)
	if killed == 0 {
		t.Fatalf("no trial killed the process before it finished")
	}
}

// killAfterMarker waits for marker (the sign the deletion started), spins
// for extra more stat calls, then SIGKILLs cmd (which may have finished by
// then: the caller tells from its wait status).
func killAfterMarker(cmd *exec.Cmd, marker string, extra int) {
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if exited(cmd) {
			return
		}
	}
	for range extra {
		_, _ = os.Stat(marker)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
}

// exited reports whether the child has finished (a zombie not reaped yet).
func exited(cmd *exec.Cmd) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return strings.HasPrefix(rest, "Z")
}

// checkAfterKill: whatever the kill interrupted, the commands tell the
// truth. A backup shown DONE is whole and has its WAL; one part-deleted is
// DELETING; xlog.db lists no missing file.
func checkAfterKill(t *testing.T, f *killFixture, tr killTrial, trial int) {
	t.Helper()
	out, errOut, code := runCLI(t, "-c", f.cfg, "-f", "json", "list-backups", "pg")
	var doc map[string][]struct {
		ID     string `json:"backup_id"`
		Status string `json:"status"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("trial %d: list-backups exit %d: %s%s", trial, code, out, errOut)
	}
	listed, onDisk := f.walState(t)
	for _, n := range listed {
		if !slices.Contains(onDisk, n) {
			t.Fatalf("trial %d: xlog.db lists %s, which is gone", trial, n)
		}
	}
	deleting := 0
	for _, b := range doc["pg"] {
		i := slices.Index(f.ids, b.ID)
		show, _, _ := runCLI(t, "-c", f.cfg, "show-backup", "pg", b.ID)
		if !strings.Contains(show, "  Status                 : "+b.Status+"\n") {
			t.Fatalf("trial %d: show-backup of %s disagrees with list-backups (%s):\n%s", trial, b.ID, b.Status, show)
		}
		switch b.Status {
		case "DONE":
			if !f.intact(i) {
				t.Fatalf("trial %d: backup %s is shown DONE but its PGDATA copy is incomplete", trial, b.ID)
			}
			for s := f.begin[i]; s <= f.nWAL; s++ {
				if !slices.Contains(listed, killSeg(s)) || !slices.Contains(onDisk, killSeg(s)) {
					t.Fatalf("trial %d: backup %s is shown DONE but WAL %s is missing", trial, b.ID, killSeg(s))
				}
			}
		case "DELETING":
			deleting++
			if i >= tr.targets {
				t.Fatalf("trial %d: backup %s is DELETING but was not a target", trial, b.ID)
			}
			if _, _, code := runCLI(t, "-c", f.cfg, "check-backup", "pg", b.ID); code == 0 {
				t.Fatalf("trial %d: check-backup of DELETING backup %s exits 0", trial, b.ID)
			}
		default:
			t.Fatalf("trial %d: backup %s shows %s", trial, b.ID, b.Status)
		}
	}
	if deleting > 0 {
		if out, _, _ := runCLI(t, "-c", f.cfg, "check", "pg"); !strings.Contains(out, "being deleted") {
			t.Fatalf("trial %d: check does not show the backup being deleted:\n%s", trial, out)
		}
	}
}

// checkCompleted: after one cron pass the targets are gone without a
// trace, the others are whole, and wals/ and xlog.db agree on exactly the
// WAL the oldest remaining backup needs.
func checkCompleted(t *testing.T, f *killFixture, tr killTrial, trial int) {
	t.Helper()
	cat := catalog.Open(f.layout)
	all, err := cat.Backups()
	if err != nil {
		t.Fatalf("trial %d: %v", trial, err)
	}
	var ids []string
	for _, b := range all {
		ids = append(ids, b.ID)
		if b.Status != catalog.StatusDone || !f.intact(slices.Index(f.ids, b.ID)) {
			t.Fatalf("trial %d: after cron backup %s is %s", trial, b.ID, b.Status)
		}
	}
	if want := f.ids[tr.targets:]; !slices.Equal(ids, want) {
		t.Fatalf("trial %d: after cron backups %v, want %v", trial, ids, want)
	}
	if p, err := cat.PendingDeletions(); err != nil || len(p) > 0 {
		t.Fatalf("trial %d: markers left: %v %v", trial, p, err)
	}
	for _, id := range f.ids[:tr.targets] {
		if _, err := os.Stat(f.layout.BackupDirPath(id)); !os.IsNotExist(err) {
			t.Fatalf("trial %d: base/%s left: %v", trial, id, err)
		}
	}
	var want []string
	for s := f.begin[tr.targets]; s <= f.nWAL; s++ {
		want = append(want, killSeg(s))
	}
	listed, onDisk := f.walState(t)
	if !slices.Equal(listed, want) || !slices.Equal(onDisk, want) {
		t.Fatalf("trial %d: after cron xlog.db %v, wals/ %v, want %v", trial, listed, onDisk, want)
	}
}

func killTrials(t *testing.T, n int) {
	bin := buildCellar(t, t.TempDir())
	for _, tc := range []struct {
		name string
		tr   killTrial
	}{
		{"delete", killTrial{args: []string{"delete", "pg", "oldest"}, policy: "REDUNDANCY 2", targets: 1}},
		{"retention", killTrial{args: []string{"retention", "pg"}, policy: "REDUNDANCY 1", targets: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) { runKillTrials(t, bin, tc.tr, n) })
	}
}

// TestKilledDeletionIsFinished is the short form of the kill -9 trials
// (the E2E test runs 30 of each).
func TestKilledDeletionIsFinished(t *testing.T) {
	t.Parallel()
	killTrials(t, 3)
}

// TestDaemonFinishesInterruptedDeletion: a real `cellar daemon` (in this
// process) finds a half-deleted backup and finishes its deletion by
// itself, without retention being involved.
func TestDaemonFinishesInterruptedDeletion(t *testing.T) {
	t.Parallel()
	f := newKillFixture(t, "REDUNDANCY 3")
	cat := catalog.Open(f.layout)
	if err := cat.MarkDeleteThis(f.ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(f.layout.BackupDataDir(f.ids[1]), "base", "3")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int)
	go func() {
		var o, e lockedBuffer
		done <- run(ctx, []string{"-c", f.cfg, "daemon", "--no-web"}, &o, &e, nil)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p, err := cat.PendingDeletions(); err == nil && len(p) == 0 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatal("the daemon did not finish the interrupted deletion within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("daemon exit %d", code)
	}
	if _, err := os.Stat(f.layout.BackupDirPath(f.ids[1])); !os.IsNotExist(err) {
		t.Fatalf("base/%s left: %v", f.ids[1], err)
	}
	all, err := cat.Backups()
	if err != nil || len(all) != 2 || all[0].ID != f.ids[0] || all[1].ID != f.ids[2] {
		t.Fatalf("after the daemon: %v %v", all, err)
	}
}
