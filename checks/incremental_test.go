package checks

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cellar-backup/cellar/internal/pgtest"
)

// TestProbeSummarizeWAL: on PostgreSQL 17 the probe reports only for a
// server with incremental backups, CRITICAL while summarize_wal is off.
func TestProbeSummarizeWAL(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Version: 17})
	tgt := pgTarget(t, c)
	mustSkip(t, tgt, "summarize_wal") // no incremental backups yet
	info := "status=DONE\nparent_backup_id=20261101T030000\n"
	if err := os.WriteFile(filepath.Join(tgt.dirs.Meta, "20261102T030000-backup.info"), []byte(info), 0o600); err != nil {
		t.Fatal(err)
	}
	mustProbe(t, tgt, "summarize_wal", Critical, "summarize_wal is off")
	c.SetConf(t, "summarize_wal", "on")
	mustProbe(t, tgt, "summarize_wal", OK, "")

	pg15 := pgTarget(t, pgtest.Start(t, pgtest.Options{}))
	if err := os.WriteFile(filepath.Join(pg15.dirs.Meta, "20261102T030000-backup.info"), []byte(info), 0o600); err != nil {
		t.Fatal(err)
	}
	mustSkip(t, pg15, "summarize_wal")
}
