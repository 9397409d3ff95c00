package recovery

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/hooks/hookstest"
)

// TestRecoverHooks restores a real backup with pre and post recovery
// scripts, then checks ABORT_STOP and a failing restore.
func TestRecoverHooks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	f.src.Exec(t, "CREATE TABLE t (id serial PRIMARY KEY, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 100) g")
	b := f.takeBackup(t, catalog.NewBackupID(time.Now()))
	f.switchAndSync(t)

	hookDir := t.TempDir()
	pre, post := filepath.Join(hookDir, "pre"), filepath.Join(hookDir, "post")
	dest := destDir(t)
	opts := Options{Layout: f.layout, Backup: b, Dest: dest, Target: Target{Immediate: true, Action: "promote"},
		Hooks: hooks.Set{Kind: hooks.KindRecovery, Server: "pg", PreRetry: hookstest.EnvDump(pre), Post: hookstest.EnvDump(post)}}
	if _, err := Recover(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	pres, posts := hookstest.ReadDumps(t, pre), hookstest.ReadDumps(t, post)
	if len(pres) != 1 || len(posts) != 1 {
		t.Fatalf("pre ran %d times, post %d; want 1 each", len(pres), len(posts))
	}
	want := map[string]string{
		"BARMAN_SERVER": "pg", "BARMAN_BACKUP_ID": b.ID, "BARMAN_BACKUP_DIR": f.layout.BackupDirPath(b.ID),
		"BARMAN_STATUS": "DONE", "BARMAN_DESTINATION_DIRECTORY": dest, "BARMAN_TABLESPACES": "",
		"BARMAN_REMOTE_COMMAND": "", "BARMAN_ERROR": "", "BARMAN_PREVIOUS_ID": "", "BARMAN_NEXT_ID": "",
		"BARMAN_RECOVER_OPTIONS": `{"target_action":"promote","target_immediate":true}`,
	}
	for k, v := range want {
		for i, got := range []map[string]string{pres[0], posts[0]} {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("phase %d: %s = %q (set %v), want %q", i, k, g, ok, v)
			}
		}
	}
	if pres[0]["BARMAN_PHASE"] != "pre" || pres[0]["BARMAN_HOOK"] != "recovery_retry_script" || pres[0]["BARMAN_RETRY"] != "1" {
		t.Errorf("pre identity: %v", pres[0])
	}
	if posts[0]["BARMAN_PHASE"] != "post" || posts[0]["BARMAN_HOOK"] != "recovery_script" {
		t.Errorf("post identity: %v", posts[0])
	}
	if _, err := os.Stat(filepath.Join(dest, "PG_VERSION")); err != nil {
		t.Fatalf("restore did not happen: %v", err)
	}

	// ABORT_STOP: nothing is restored.
	dest2 := destDir(t)
	opts.Dest = dest2
	opts.Hooks.PreRetry = "exit 63"
	if _, err := Recover(t.Context(), opts); !errors.Is(err, hooks.ErrAbortStop) {
		t.Fatalf("Recover err = %v, want ErrAbortStop", err)
	}
	if _, err := os.Stat(filepath.Join(dest2, "PG_VERSION")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("aborted restore wrote files (stat err %v)", err)
	}

	// A failing restore (destination not empty) reaches the post script
	// (the aborted one never started, so it has no post run).
	opts.Dest = dest
	opts.Hooks.PreRetry = ""
	if _, err := Recover(t.Context(), opts); !errors.Is(err, ErrDestinationNotEmpty) {
		t.Fatalf("Recover into used dir: %v", err)
	}
	posts = hookstest.ReadDumps(t, post)
	if len(posts) != 2 || !strings.Contains(posts[1]["BARMAN_ERROR"], "not empty") {
		t.Fatalf("post runs: %d, last error %q", len(posts), posts[len(posts)-1]["BARMAN_ERROR"])
	}
}
