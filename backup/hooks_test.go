package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/internal/hooks/hookstest"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

func checkEnv(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s: %s = %q (set %v), want %q", what, k, g, ok, v)
		}
	}
}

// TestBackupHooks takes one real backup with pre and post scripts, then a
// second one that a pre retry script stops with ABORT_STOP.
func TestBackupHooks(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Archive: true})
	o := newOptions(t, c)
	hookDir := t.TempDir()
	pre, post := filepath.Join(hookDir, "pre"), filepath.Join(hookDir, "post")
	o.Hooks = hooks.Set{Kind: hooks.KindBackup, Server: "pg", Configuration: "/etc/cellar.yaml", Version: "test",
		Pre: hookstest.EnvDump(pre), PreRetry: "exit 62", Post: hookstest.EnvDump(post)}
	info, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	l := o.Layout
	common := map[string]string{
		"BARMAN_SERVER": "pg", "BARMAN_CONFIGURATION": "/etc/cellar.yaml", "BARMAN_VERSION": "test",
		"BARMAN_BACKUP_ID": info.ID, "BARMAN_BACKUP_DIR": l.BackupDirPath(info.ID),
		"BARMAN_BACKUP_INFO_PATH": l.MetaBackupInfoPath(info.ID), "BARMAN_PREVIOUS_ID": "",
		"BARMAN_RETRY": "0", "BARMAN_HOOK": "backup_script", "BARMAN_ERROR": "",
	}
	pres, posts := hookstest.ReadDumps(t, pre), hookstest.ReadDumps(t, post)
	if len(pres) != 1 || len(posts) != 1 {
		t.Fatalf("pre ran %d times, post %d; want 1 each", len(pres), len(posts))
	}
	checkEnv(t, "pre", pres[0], common)
	checkEnv(t, "pre", pres[0], map[string]string{"BARMAN_PHASE": "pre", "BARMAN_STATUS": string(catalog.StatusEmpty)})
	checkEnv(t, "post", posts[0], common)
	checkEnv(t, "post", posts[0], map[string]string{"BARMAN_PHASE": "post", "BARMAN_STATUS": string(info.Status)})
	if info.Status != catalog.StatusWaitingForWALs && info.Status != catalog.StatusDone {
		t.Fatalf("status %s", info.Status)
	}

	// ABORT_STOP: the backup fails before copying, the post scripts still
	// report it.
	o.Hooks.PreRetry = "exit 63"
	failed, err := Run(context.Background(), o)
	if !errors.Is(err, hooks.ErrAbortStop) {
		t.Fatalf("Run err = %v, want ErrAbortStop", err)
	}
	if failed == nil || failed.Status != catalog.StatusFailed {
		t.Fatalf("aborted backup info = %+v", failed)
	}
	if _, err := os.Stat(l.BackupDataDir(failed.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("aborted backup copied data (stat err %v)", err)
	}
	posts = hookstest.ReadDumps(t, post)
	if len(posts) != 2 {
		t.Fatalf("post ran %d times, want 2", len(posts))
	}
	checkEnv(t, "post after abort", posts[1], map[string]string{
		"BARMAN_BACKUP_ID": failed.ID, "BARMAN_STATUS": string(catalog.StatusFailed), "BARMAN_PREVIOUS_ID": info.ID,
	})
	if !strings.Contains(posts[1]["BARMAN_ERROR"], "ABORT_STOP") {
		t.Errorf("post after abort: BARMAN_ERROR = %q", posts[1]["BARMAN_ERROR"])
	}
}
