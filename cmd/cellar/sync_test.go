package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/passive"
)

// TestPassiveSyncOverSSH: a primary and a passive catalog on this machine,
// the passive reaching the primary through a real sshd on 127.0.0.1 and the
// built cellar binary on both sides.
func TestPassiveSyncOverSSH(t *testing.T) {
	t.Parallel()
	port, sshCmd := startSSHD(t)
	work := t.TempDir()
	bin := buildCellar(t, work)
	primaryHome, passiveHome := filepath.Join(work, "primary"), filepath.Join(work, "passive")
	primaryCfg, passiveCfg := filepath.Join(work, "primary.yaml"), filepath.Join(work, "passive.yaml")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(primaryCfg, fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: \"host=/nonexistent port=1\"\n", primaryHome))
	// The ssh command carries the primary's environment (config file and
	// where its cellar lives), as an administrator would with a wrapper.
	primarySSH := fmt.Sprintf("%s -p %d root@127.0.0.1 env CELLAR_CONFIG=%s PATH=%s:/usr/local/bin:/usr/bin:/bin", sshCmd, port, primaryCfg, filepath.Dir(bin))
	write(passiveCfg, fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    primary_ssh_command: %q\n    bandwidth_limit: 100000\n", passiveHome, primarySSH))

	// Primary catalog: a DONE backup, a FAILED one, WAL 1..3 in xlog.db.
	pl := catalog.NewLayout("pg", filepath.Join(primaryHome, "pg"), primaryHome)
	if err := pl.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	const id, failed = "20240102T030405", "20240103T030405"
	for rel, size := range map[string]int{"data/PG_VERSION": 3, "data/base/1/1259": 300000, "data/global/pg_control": 8192} {
		p := filepath.Join(pl.BackupDirPath(id), rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		randomFile(t, p, size)
	}
	var xlog bytes.Buffer
	for seg := 1; seg <= 3; seg++ {
		name := fmt.Sprintf("0000000100000000000000%02X", seg)
		p := filepath.Join(pl.WalsDir, "0000000100000000", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		randomFile(t, p, 16384)
		fmt.Fprintf(&xlog, "%s\t16384\t1704067200.%d\tNone\tNone\n", name, seg)
	}
	write(filepath.Join(pl.WalsDir, catalog.XLogDBName("pg")), xlog.String())
	for bid, st := range map[string]catalog.Status{id: catalog.StatusDone, failed: catalog.StatusFailed} {
		b := catalog.NewBackupInfo(bid)
		b.Status, b.BeginWAL, b.EndWAL = st, "000000010000000000000002", "000000010000000000000002"
		b.Mode, b.Version, b.Timeline = "postgres", 150004, 1
		if err := catalog.WriteBackupInfo(pl.MetaBackupInfoPath(bid), b); err != nil {
			t.Fatal(err)
		}
	}

	out, errOut, code := runBin(t, bin, "-c", primaryCfg, "sync-info", "pg")
	if code != 0 {
		t.Fatalf("sync-info: %d %s", code, errOut)
	}
	info, err := passive.ParseInfo(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Backups) != 1 || info.Backups[id] == nil || len(info.WALs) != 2 || info.LastName != "000000010000000000000003" {
		t.Fatalf("sync-info: %s", out)
	}

	if _, errOut, code := runBin(t, bin, "-c", passiveCfg, "sync-backup", "pg", id); code != 0 {
		t.Fatalf("sync-backup: %d %s", code, errOut)
	}
	if out, errOut, code := runBin(t, bin, "-c", passiveCfg, "sync-wals", "pg"); code != 0 || !strings.Contains(string(out), "Synchronised 2 WAL files") {
		t.Fatalf("sync-wals: %d %q %s", code, out, errOut)
	}
	vl := catalog.NewLayout("pg", filepath.Join(passiveHome, "pg"), passiveHome)
	for _, rel := range []string{"data/PG_VERSION", "data/base/1/1259", "data/global/pg_control"} {
		a, _ := os.ReadFile(filepath.Join(pl.BackupDirPath(id), rel))
		b, err := os.ReadFile(filepath.Join(vl.BackupDirPath(id), rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs (%v)", rel, err)
		}
	}
	a, _ := os.ReadFile(pl.MetaBackupInfoPath(id))
	if b, err := os.ReadFile(vl.MetaBackupInfoPath(id)); err != nil || !bytes.Equal(a, b) {
		t.Errorf("backup.info differs: %v\n%s", err, b)
	}
	if _, err := os.Stat(vl.BackupDirPath(failed)); err == nil {
		t.Error("FAILED primary backup copied")
	}
	for seg := 2; seg <= 3; seg++ {
		name := fmt.Sprintf("0000000100000000000000%02X", seg)
		a, _ := os.ReadFile(filepath.Join(pl.WalsDir, "0000000100000000", name))
		if b, err := os.ReadFile(filepath.Join(vl.WalsDir, "0000000100000000", name)); err != nil || !bytes.Equal(a, b) {
			t.Errorf("WAL %s differs (%v)", name, err)
		}
	}
	gotXlog, _ := os.ReadFile(filepath.Join(vl.WalsDir, catalog.XLogDBName("pg")))
	if want := strings.SplitN(xlog.String(), "\n", 2)[1]; string(gotXlog) != want {
		t.Errorf("passive xlog.db:\n%s\nwant\n%s", gotXlog, want)
	}
}
