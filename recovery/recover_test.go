package recovery

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/wal"
)

// points are the recovery targets recorded on the source, each with the
// table contents the source held there.
type points struct {
	backup    *catalog.BackupInfo
	tarBackup *catalog.BackupInfo
	s0tar     state
	s0        state // at the end of the backup (immediate)
	s1        state // restore point rp1
	xid2      string
	s2        state
	lsn3      wal.LSN
	s3        state
	time4     time.Time
	s4        state
	s5        state // end of timeline 1
	sTL2      state // end of timeline 2 (forked at rp1)
}

func insertBatch(f *fixture, t testing.TB, rows int) {
	t.Helper()
	f.src.Exec(t, "INSERT INTO t (v) SELECT md5(random()::text) FROM generate_series(1,"+itoa(rows)+");"+
		"INSERT INTO ts_t (v) SELECT md5(random()::text) FROM generate_series(1,"+itoa(rows/2)+");"+
		"UPDATE t SET v = md5(v) WHERE id % 7 = 0")
}

func itoa(n int) string { return strconv.Itoa(n) }

func setupPoints(t *testing.T, f *fixture) *points {
	t.Helper()
	p := &points{}
	f.src.Exec(t, "CREATE TABLE t (id serial PRIMARY KEY, v text); CREATE TABLE ts_t (id serial, v text) TABLESPACE ts1")
	insertBatch(f, t, 2000)
	p.s0 = f.state(t)
	p.backup = f.takeBackup(t, catalog.NewBackupID(time.Now()))
	// The same state as a zstd tar backup (pg_basebackup names:
	// base.tar.zst, <oid>.tar.zst).
	p.tarBackup = f.takeBackup(t, catalog.NewBackupID(time.Now().Add(time.Second)), "-Ft", "--compress=client-zstd")
	if p.s0tar = f.state(t); len(p.s0tar) != len(p.s0) {
		t.Fatal("state changed during backups")
	}

	insertBatch(f, t, 500)
	p.s1 = f.state(t)
	f.src.Exec(t, "SELECT pg_create_restore_point('rp1')")

	p.xid2 = strings.TrimSpace(f.src.QueryRow(t, "BEGIN; INSERT INTO t (v) SELECT md5(random()::text) FROM generate_series(1,300); SELECT txid_current()::text; COMMIT"))
	p.s2 = f.state(t)

	insertBatch(f, t, 400)
	p.s3 = f.state(t)
	lsn, err := wal.ParseLSN(f.q(t, "SELECT pg_current_wal_insert_lsn()"))
	if err != nil {
		t.Fatal(err)
	}
	p.lsn3 = lsn

	insertBatch(f, t, 350)
	p.s4 = f.state(t)
	if p.time4, err = time.Parse("2006-01-02 15:04:05.999999-07", f.q(t, "SELECT clock_timestamp()")); err != nil {
		t.Fatal(err)
	}
	insertBatch(f, t, 250)
	p.s5 = f.state(t)
	f.switchAndSync(t)
	return p
}

func baseOpts(t testing.TB, f *fixture, p *points, tsDir string) Options {
	return Options{
		Layout:      f.layout,
		Backup:      p.backup,
		Dest:        destDir(t),
		Tablespaces: map[string]string{"ts1": tsDir},
		Parallel:    2,
	}
}

func tsDir(t testing.TB) string { return filepath.Join(pgtestDir(t), "ts1new") }

func pgtestDir(t testing.TB) string { return filepath.Dir(destDir(t)) }

// restoreAndCheck recovers, starts PostgreSQL on the result and compares
// its tables with want.
func restoreAndCheck(t *testing.T, f *fixture, opts Options, want state, promote bool) (*Result, *restored) {
	t.Helper()
	res, err := Recover(t.Context(), opts)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	chownPostgres(t, opts.Dest)
	for _, loc := range opts.Tablespaces {
		chownPostgres(t, loc)
	}
	r := f.startRestored(t, opts.Dest)
	if promote {
		r.waitPromoted(t)
	}
	compareStates(t, "restored", r.state(t), want)
	return res, r
}

func TestRecover(t *testing.T) {
	f := newFixture(t, 1)
	p := setupPoints(t, f)

	// Fork timeline 2 at rp1: restore, promote with archiving into the
	// source's archive, write, and archive the new timeline.
	{
		opts := baseOpts(t, f, p, tsDir(t))
		opts.Target = Target{Name: "rp1", Action: "promote"}
		res, err := Recover(t.Context(), opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.TargetTLI != 1 || res.WALFiles == 0 || res.SignalFile == "" {
			t.Fatalf("result %+v", res)
		}
		chownPostgres(t, opts.Dest, opts.Tablespaces["ts1"])
		r := f.startRestored(t, opts.Dest, "-c archive_mode=on")
		r.waitPromoted(t)
		r.q(t, "ALTER SYSTEM SET archive_command = 'test ! -f "+f.src.ArchiveDir+"/%f && cp %p "+f.src.ArchiveDir+"/%f'")
		r.q(t, "SELECT pg_reload_conf()")
		r.q(t, "INSERT INTO t (v) SELECT 'tl2-'||g FROM generate_series(1,777) g; DELETE FROM ts_t WHERE id % 5 = 0")
		p.sTL2 = r.state(t)
		last := r.q(t, "SELECT pg_walfile_name(pg_switch_wal())")
		deadline := time.Now().Add(30 * time.Second)
		for r.q(t, "SELECT coalesce(last_archived_wal,'') FROM pg_stat_archiver") < last {
			if time.Now().After(deadline) {
				t.Fatalf("timeline 2 WAL %s not archived", last)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if tl := r.q(t, "SELECT timeline_id FROM pg_control_checkpoint()"); tl != "2" {
			t.Logf("timeline after promote: %s", tl)
		}
		r.stop(t)
		f.syncArchive(t)
	}

	cases := []struct {
		name    string
		target  Target
		want    func() state
		promote bool
		getWAL  bool
	}{
		{"time", Target{Time: &p.time4, Action: "promote"}, func() state { return p.s4 }, true, false},
		{"xid", Target{XID: p.xid2, Action: "promote"}, func() state { return p.s2 }, true, false},
		{"lsn", Target{LSN: &p.lsn3, Action: "promote"}, func() state { return p.s3 }, true, false},
		{"name", Target{Name: "rp1", Action: "promote"}, func() state { return p.s1 }, true, false},
		{"immediate", Target{Immediate: true, Action: "promote"}, func() state { return p.s0 }, true, false},
		{"latest-timeline", Target{TLI: "latest"}, func() state { return p.sTL2 }, true, false},
		{"timeline-2-number", Target{TLI: "2"}, func() state { return p.sTL2 }, true, false},
		{"no-target", Target{}, func() state { return p.s5 }, false, false},
		{"get-wal-name", Target{Name: "rp1", Action: "promote"}, func() state { return p.s1 }, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := baseOpts(t, f, p, tsDir(t))
			opts.Target = tc.target
			if tc.getWAL {
				opts.GetWAL = true
				opts.RestoreCommand = "cp " + f.src.ArchiveDir + "/%f %p"
			}
			res, _ := restoreAndCheck(t, f, opts, tc.want(), tc.promote)
			if tc.getWAL && res.WALFiles != 0 {
				t.Errorf("get-wal restore copied %d WAL files", res.WALFiles)
			}
			if !tc.getWAL && res.WALFiles == 0 {
				t.Errorf("no WAL copied")
			}
			if tc.name == "latest-timeline" && res.TargetTLI != 2 {
				t.Errorf("latest timeline resolved to %d, want 2", res.TargetTLI)
			}
			// The restored configuration must not archive into the source's
			// archive, and the original is kept.
			auto, err := os.ReadFile(filepath.Join(opts.Dest, "postgresql.auto.conf"))
			if err != nil || !strings.Contains(string(auto), "\narchive_command = false\n") {
				t.Errorf("postgresql.auto.conf does not disable archiving: %v\n%s", err, auto)
			}
			if _, err := os.Stat(filepath.Join(opts.Dest, "postgresql.auto.conf.origin")); err != nil {
				t.Errorf("no .origin copy: %v", err)
			}
			conf, _ := os.ReadFile(filepath.Join(opts.Dest, "postgresql.conf"))
			if strings.Contains(string(conf), "\narchive_command") {
				t.Errorf("postgresql.conf still sets archive_command")
			}
			link, err := os.Readlink(filepath.Join(opts.Dest, "pg_tblspc", itoa(int(p.backup.Tablespaces[0].OID))))
			if err != nil || link != opts.Tablespaces["ts1"] {
				t.Errorf("tablespace link %q (%v), want %q", link, err, opts.Tablespaces["ts1"])
			}
		})
	}

	t.Run("tar-zstd-immediate", func(t *testing.T) {
		t.Parallel()
		opts := baseOpts(t, f, p, tsDir(t))
		opts.Backup = p.tarBackup
		opts.Target = Target{Immediate: true, Action: "promote"}
		res, _ := restoreAndCheck(t, f, opts, p.s0, true)
		if res.Files < 100 {
			t.Errorf("tar restore wrote %d files", res.Files)
		}
	})

	t.Run("remote-ssh", func(t *testing.T) {
		t.Parallel()
		sshCmd := startSSHD(t)
		opts := baseOpts(t, f, p, tsDir(t))
		opts.RemoteSSHCommand = sshCmd
		opts.Target = Target{XID: p.xid2, Action: "promote"}
		restoreAndCheck(t, f, opts, p.s2, true)
		// A second restore into the now non-empty remote directory is refused.
		opts.Tablespaces["ts1"] = tsDir(t)
		if _, err := Recover(t.Context(), opts); !errors.Is(err, ErrDestinationNotEmpty) {
			t.Fatalf("remote restore into a used directory: %v", err)
		}
	})

	t.Run("delta", func(t *testing.T) {
		t.Parallel()
		opts := baseOpts(t, f, p, tsDir(t))
		opts.Target = Target{Immediate: true, Action: "promote"}
		_, r := restoreAndCheck(t, f, opts, p.s0, true)
		r.q(t, "INSERT INTO t (v) SELECT 'junk' FROM generate_series(1,5000); CREATE TABLE extra (x int); INSERT INTO extra VALUES (1); CHECKPOINT")
		r.stop(t)
		opts.Target = Target{Name: "rp1", Action: "promote"}
		opts.DeltaRestore = true
		res, r2 := restoreAndCheck(t, f, opts, p.s1, true)
		if res.Unchanged == 0 || res.Removed == 0 {
			t.Errorf("delta restore rewrote everything: %+v", res)
		}
		t.Logf("delta: %d files written, %d unchanged, %d removed", res.Files, res.Unchanged, res.Removed)
		r2.stop(t)
	})

	t.Run("refusals", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		before := p.backup.EndTime.Add(-time.Hour)
		early := wal.LSN(1)
		failed := *p.backup
		failed.Status = catalog.StatusFailed
		failed.Error = "failure copy (boom)"
		nonEmpty := destDir(t)
		if err := os.MkdirAll(nonEmpty, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(nonEmpty, "PG_VERSION"), []byte("15\n"), 0o600)
		for _, tc := range []struct {
			name string
			mod  func(o *Options)
			want error
			msg  string
		}{
			{"conflicting", func(o *Options) { o.Target = Target{Name: "rp1", Immediate: true} }, ErrConflictingTargets, "name, immediate"},
			{"time-before-end", func(o *Options) { o.Target = Target{Time: &before} }, ErrTargetBeforeBackup, "before backup"},
			{"lsn-before-end", func(o *Options) { o.Target = Target{LSN: &early} }, ErrTargetBeforeBackup, "0/1"},
			{"failed-backup", func(o *Options) { o.Backup = &failed }, ErrBackupNotRestorable, "FAILED"},
			{"non-empty", func(o *Options) { o.Dest = nonEmpty }, ErrDestinationNotEmpty, "PG_VERSION"},
			{"tablespace-in-use", func(o *Options) { o.Tablespaces = nil }, ErrDestinationNotEmpty, f.src.TablespaceDirs[0]},
			{"unknown-tablespace", func(o *Options) { o.Tablespaces = map[string]string{"nope": "/x"} }, ErrInvalidOptions, "nope"},
			{"exclusive-without-target", func(o *Options) { o.Target = Target{Exclusive: true, Name: "x"} }, ErrInvalidOptions, "--exclusive"},
			{"action-without-target", func(o *Options) { o.Target = Target{Action: "promote"} }, ErrInvalidOptions, "target"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				opts := baseOpts(t, f, p, tsDir(t))
				tc.mod(&opts)
				_, err := Recover(ctx, opts)
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.msg)
				}
			})
		}
	})
}
