package checktarget

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/passive"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// The test binary doubles as the primary's cellar: with
// CHECKTARGET_PRIMARY=<backup_directory> it answers
// "cellar -q sync-info pg [LAST_WAL LAST_POSITION]" from that catalog, as
// the real command would at the far end of primary_ssh_command.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CHECKTARGET_PRIMARY"); dir != "" {
		os.Exit(remoteSyncInfo(dir, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func remoteSyncInfo(dir string, args []string) int {
	for len(args) > 0 && (args[0] == "cellar" || args[0] == "-q") {
		args = args[1:]
	}
	if len(args) < 2 || args[0] != "sync-info" || args[1] != "pg" {
		fmt.Fprintf(os.Stderr, "remote: bad arguments %q\n", args)
		return 2
	}
	last, pos := "", int64(0)
	if len(args) > 3 {
		last = args[2]
		pos, _ = strconv.ParseInt(args[3], 10, 64)
	}
	info, err := passive.SyncInfo(context.Background(), primaryLayout(dir), last, pos)
	if err == nil {
		var data []byte
		if data, err = info.MarshalJSON(); err == nil {
			_, err = os.Stdout.Write(data)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "remote:", err)
		return 1
	}
	return 0
}

func primaryLayout(dir string) catalog.Layout {
	return catalog.NewLayout("pg", dir, filepath.Dir(dir))
}

func segName(seg int) string { return wal.Name{TLI: 1, Seg: uint32(seg)}.String() }

// walAt is segment seg archived at a time that grows by 90 s per segment.
func walAt(seg int) catalog.WALInfo {
	return catalog.WALInfo{Name: segName(seg), Size: 16 << 20, Time: 1_790_000_000 + 90*float64(seg)}
}

// newPassive builds a passive server "pg" whose primary_ssh_command is
// sshCommand, and a primary catalog holding WAL 1..5.
func newPassive(t *testing.T, sshCommand func(primaryDir string) string) (*server.Server, catalog.Layout) {
	t.Helper()
	root := t.TempDir()
	primary := primaryLayout(filepath.Join(root, "primary", "pg"))
	if err := primary.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	var all []catalog.WALInfo
	for seg := 1; seg <= 5; seg++ {
		all = append(all, walAt(seg))
	}
	if err := catalog.OpenXLogDB(primary).Append(t.Context(), all...); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "passive")
	cfgFile := filepath.Join(root, "passive.yaml")
	yaml := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    primary_ssh_command: %q\n", home, sshCommand(primary.BackupDir))
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
	return s, primary
}

func testExecutable(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// syncedUpTo makes the passive catalog look like a sync that copied WAL
// 1..seg after a sync-info answer listing all five.
func syncedUpTo(t *testing.T, s *server.Server, primary catalog.Layout, seg int) {
	t.Helper()
	info, err := passive.SyncInfo(t.Context(), primary, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := passive.WritePrimaryInfo(s.Layout(), info); err != nil {
		t.Fatal(err)
	}
	var local []catalog.WALInfo
	var pos int64
	for i := 1; i <= seg; i++ {
		local = append(local, walAt(i))
		if i < seg {
			pos += int64(len(walAt(i).Line()))
		}
	}
	if err := s.XLogDB().Append(t.Context(), local...); err != nil {
		t.Fatal(err)
	}
	if err := passive.WriteSyncWALsInfo(s.Layout(), passive.SyncWALsInfo{LastWAL: segName(seg), LastPosition: pos}); err != nil {
		t.Fatal(err)
	}
}

func TestPassive(t *testing.T) {
	t.Parallel()
	exe := testExecutable(t)
	working := func(dir string) string { return "env CHECKTARGET_PRIMARY=" + dir + " " + exe }
	tests := []struct {
		name       string
		ssh        func(string) string
		syncedTo   int // 0 = never synced
		reachable  bool
		wantLagSeg int64
		wantLagSec float64
	}{
		{name: "never synced", ssh: working, reachable: true},
		{name: "two behind", ssh: working, syncedTo: 3, reachable: true, wantLagSeg: 2, wantLagSec: walAt(5).Time - walAt(3).Time},
		{name: "in step", ssh: working, syncedTo: 5, reachable: true},
		{name: "primary unreachable", ssh: func(string) string { return "false" }, syncedTo: 1, wantLagSeg: 4, wantLagSec: walAt(5).Time - walAt(1).Time},
		{name: "remote cellar fails", ssh: func(string) string { return "env CHECKTARGET_PRIMARY=/nonexistent/pg " + exe }, syncedTo: 4, wantLagSeg: 1, wantLagSec: 90},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, primary := newPassive(t, tc.ssh)
			if tc.syncedTo > 0 {
				syncedUpTo(t, s, primary, tc.syncedTo)
			}
			st, err := New(s).Passive(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if tc.reachable != (st.PrimaryErr == nil) {
				t.Fatalf("PrimaryErr = %v, want reachable=%v", st.PrimaryErr, tc.reachable)
			}
			if !tc.reachable && !errors.Is(st.PrimaryErr, passive.ErrRemote) {
				t.Errorf("PrimaryErr = %v, want ErrRemote", st.PrimaryErr)
			}
			if st.LagKnown != (tc.syncedTo > 0) || st.LagSegments != tc.wantLagSeg || st.LagSeconds != tc.wantLagSec {
				t.Errorf("lag = known %v, %v s, %d segments; want known %v, %v s, %d segments",
					st.LagKnown, st.LagSeconds, st.LagSegments, tc.syncedTo > 0, tc.wantLagSec, tc.wantLagSeg)
			}
			// The check writes nothing: no primary.info appears, none is
			// rewritten.
			if _, err := os.Stat(s.Layout().PrimaryInfoPath()); (err == nil) != (tc.syncedTo > 0) {
				t.Errorf("primary.info after the check: %v", err)
			}
		})
	}
}

func TestPassiveNotConfigured(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: \"host=/nonexistent\"\n", dir)), 0o600); err != nil {
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
	if _, err := New(s).Passive(t.Context()); !errors.Is(err, checks.ErrNotConfigured) {
		t.Fatalf("Passive on an active server = %v, want ErrNotConfigured", err)
	}
}

// TestPassiveCheckRun runs the whole default registry on a passive server:
// no PostgreSQL probe appears, ssh follows the primary's reachability and
// carries the lag gauges.
func TestPassiveCheckRun(t *testing.T) {
	t.Parallel()
	exe := testExecutable(t)
	for _, reachable := range []bool{true, false} {
		t.Run(fmt.Sprintf("reachable=%v", reachable), func(t *testing.T) {
			t.Parallel()
			s, primary := newPassive(t, func(dir string) string {
				if reachable {
					return "env CHECKTARGET_PRIMARY=" + dir + " " + exe
				}
				return "/nonexistent/ssh backup1"
			})
			syncedUpTo(t, s, primary, 2)
			results := checks.Default().Run(t.Context(), New(s), checks.Full)
			var ssh *checks.Result
			for i, r := range results {
				if p, _ := checks.Default().Probe(r.Key); p.Group == "postgres" || p.Group == "wal_streaming" {
					t.Errorf("PostgreSQL probe %s ran on a passive server: %s (%s)", r.Key, r.Status, r.Hint)
				}
				if r.Key == "ssh" {
					ssh = &results[i]
				}
			}
			if ssh == nil {
				t.Fatal("no ssh result")
			}
			if reachable && (ssh.Status != checks.OK || ssh.Hint != "Barman primary node") {
				t.Errorf("ssh = %s (%q)", ssh.Status, ssh.Hint)
			}
			if !reachable && (ssh.Status != checks.Critical || !strings.Contains(ssh.Hint, "/nonexistent/ssh")) {
				t.Errorf("ssh = %s (%q), want CRITICAL naming the command", ssh.Status, ssh.Hint)
			}
			if got := ssh.Values[checks.GaugePassiveLagSegments]; got != 3 {
				t.Errorf("lag segments = %v, want 3", got)
			}
			if got := ssh.Values[checks.GaugePassiveLagSeconds]; got != walAt(5).Time-walAt(2).Time {
				t.Errorf("lag seconds = %v", got)
			}
		})
	}
}
