package backup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

// buildCellar builds the cellar command into a temporary directory.
func buildCellar(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cellar")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/cellar")
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cellar: %v\n%s", err, out)
	}
	return bin
}

// catalogWAL copies what the source archived into the catalog's wals
// directory and rebuilds xlog.db, as archive-wal would have.
func catalogWAL(t *testing.T, c *pgtest.Cluster, l catalog.Layout) {
	t.Helper()
	ents, err := os.ReadDir(c.ArchiveDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !wal.IsAnyWALName(e.Name()) {
			continue
		}
		n, err := wal.ParseName(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		dst := l.WALPath(n)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			t.Fatal(err)
		}
		runCmd(t, "cp", filepath.Join(c.ArchiveDir, e.Name()), dst)
	}
	if err := catalog.OpenXLogDB(l).Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestCellarRecoverServerCompressed restores server-compressed backups
// (lz4 and zstd tar files as the server made them) with `cellar recover`,
// i.e. through the recovery package, relocating the tablespace, and
// compares the tables after replaying the archive.
func TestCellarRecoverServerCompressed(t *testing.T) {
	t.Parallel()
	bin := buildCellar(t)
	for _, comp := range []string{CompressionLZ4, CompressionZstd} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			c := sourceCluster(t)
			o := newOptions(t, c)
			o.Compression = comp
			stop := startLoad(t, c)
			info, err := Run(context.Background(), o)
			if err != nil {
				stop()
				t.Fatalf("Run: %v", err)
			}
			want := finishSource(t, c, stop)
			catalogWAL(t, c, o.Layout)

			home := filepath.Dir(o.Layout.BackupDir)
			cfg := filepath.Join(t.TempDir(), "cellar.yaml")
			conf := fmt.Sprintf("global:\n  barman_home: %s\n  barman_lock_directory: %s\nservers:\n  pg:\n    conninfo: %q\n", home, o.Layout.LockDir, c.ConnString())
			if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			root := pgtest.MkdirForPostgres(t)
			data := filepath.Join(root, "data")
			out, err := exec.Command(bin, "-c", cfg, "recover", "--tablespace", "ts1:"+filepath.Join(root, "ts1"), "pg", info.ID, data).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "successfully prepared for recovery") {
				t.Fatalf("cellar recover: %v\n%s", err, out)
			}
			// Without a target, recover copies the WAL into pg_wal and
			// writes no recovery.signal (Barman's behaviour): crash recovery.
			startAndCompare(t, c, root, data, "", false, want)
		})
	}
}
