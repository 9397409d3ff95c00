package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/server"
)

// verifyEnv is a real PostgreSQL 15 with a Cellar catalog holding one
// backup taken by the CLI, and a configuration for a daemon serving
// /metrics on a free port.
type verifyEnv struct {
	bin, cfgFile, metricsURL string
	metricsAddr              string
	cluster                  *pgtest.Cluster
	cat                      *catalog.Catalog
	backupID                 string
}

func newVerifyEnv(t *testing.T, extra string) *verifyEnv {
	t.Helper()
	root := pgtest.MkdirForPostgres(t)
	e := &verifyEnv{bin: buildCellar(t, root), cfgFile: filepath.Join(root, "config.yaml")}
	home := filepath.Join(root, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	port := freeTCPPort(t)
	e.metricsAddr = fmt.Sprintf("127.0.0.1:%d", port)
	e.metricsURL = "http://" + e.metricsAddr + "/metrics"
	e.cluster = pgtest.Start(t, pgtest.Options{ArchiveCommand: fmt.Sprintf("%s -c %s -q wal-archive pg %%p", e.bin, e.cfgFile)})
	text := fmt.Sprintf(`global:
  barman_home: %s
  web:
    listen_address: 127.0.0.1:%d
  daemon:
    archive_interval: 1s
    check_backup_interval: 1s
servers:
  pg:
    conninfo: %q
    streaming_conninfo: %q
    backup_method: postgres
    archiver: true
    immediate_checkpoint: true
%s`, home, port, e.cluster.ConnString(), e.cluster.ConnString(), extra)
	if err := os.WriteFile(e.cfgFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, root)
	cfg, err := config.Load(config.LoadOptions{File: e.cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.cat = catalog.Open(s.Layout())
	e.cluster.WaitArchived(t, e.cluster.SwitchWAL(t))
	if out, errOut, code := runAsPostgresBin(t, e.bin, "-c", e.cfgFile, "backup", "pg"); code != 0 {
		t.Fatalf("cellar backup: exit %d\n%s\n%s", code, out, errOut)
	}
	bs, err := e.cat.Backups()
	if err != nil || len(bs) != 1 {
		t.Fatalf("catalog after backup: %v, %v", bs, err)
	}
	e.backupID = bs[0].ID
	e.cluster.SwitchWAL(t)
	return e
}

// startDaemon runs `cellar daemon` as the postgres user until the test ends.
func (e *verifyEnv) startDaemon(t *testing.T) *lockedBuffer {
	t.Helper()
	log := &lockedBuffer{}
	cmd := exec.Command(e.bin, "-c", e.cfgFile, "daemon")
	asPostgres(t, cmd)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(log.String(), 60))
		}
	})
	return log
}

// The daemon runs verify_backup_schedule: a DONE backup taken by the CLI
// gets a verification record, and the exporter's verification gauge, the
// "backup verification" probe and the verify-backup job metrics turn OK.
func TestDaemonScheduledVerification(t *testing.T) {
	t.Parallel()
	e := newVerifyEnv(t, "    verify_backup_schedule: \"@every 1s\"\n")
	start := time.Now()
	e.startDaemon(t)

	deadline := time.Now().Add(60 * time.Second)
	for {
		v, ok, err := e.cat.Verification(e.backupID)
		metrics := scrape(t, e.metricsURL)
		verOK, _ := metricValue(metrics, "cellar_backup_last_verification_ok", `server="pg"`)
		check, checkOK := metricValue(metrics, "cellar_check_status", `server="pg"`, `check="backup_verification"`)
		last, _ := metricValue(metrics, "cellar_job_last_success_timestamp_seconds", `server="pg"`, `job="verify-backup"`)
		if err == nil && ok && v.Result == catalog.VerifyOK && verOK == 1 && checkOK && check == 0 && last >= float64(start.Unix()) {
			if b, ok := metricValue(metrics, "cellar_build_info", `version="dev"`, `goversion="go`); !ok || b != 1 {
				t.Errorf("daemon /metrics: cellar_build_info = %v (present %v), want 1", b, ok)
			}
			if v.Files == 0 || v.Bytes == 0 {
				t.Errorf("verification record %+v counts no files", v)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no OK scheduled verification of %s: record %+v (%v, %v); last_verification_ok %v, check_status %v (%v), verify-backup last success %v",
				e.backupID, v, ok, err, verOK, check, checkOK, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
