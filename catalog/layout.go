package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/wal"
)

// Layout holds the paths of one server's on-disk state (BARMAN-FACTS §2.1).
type Layout struct {
	Server       string
	BackupDir    string
	WalsDir      string
	IncomingDir  string
	StreamingDir string
	ErrorsDir    string
	MetaDir      string
	BaseDir      string
	LockDir      string
	// DefaultFormat is the format of a catalog that has nothing written
	// yet (barman_compatibility); an existing catalog keeps the format
	// found on disk (see Layout.Format). The zero value is the newest.
	DefaultFormat Format
}

// NewLayout returns Barman's default layout: every directory a child of
// backupDir, locks in lockDir.
func NewLayout(server, backupDir, lockDir string) Layout {
	return Layout{
		Server:       server,
		BackupDir:    backupDir,
		WalsDir:      filepath.Join(backupDir, "wals"),
		IncomingDir:  filepath.Join(backupDir, "incoming"),
		StreamingDir: filepath.Join(backupDir, "streaming"),
		ErrorsDir:    filepath.Join(backupDir, "errors"),
		MetaDir:      filepath.Join(backupDir, "meta"),
		BaseDir:      filepath.Join(backupDir, "base"),
		LockDir:      lockDir,
	}
}

// MakeDirs creates every directory of the layout (mode 0700), fsyncing the
// parents. meta/ is left out of a Barman 3.4 catalog, which has none.
func (l Layout) MakeDirs() error {
	f, err := l.Format()
	if err != nil {
		return err
	}
	for _, d := range l.dirs(f) {
		if d == "" {
			continue
		}
		if err := durable.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("server %s: create %s: %w", l.Server, d, err)
		}
	}
	return nil
}

// dirs lists the directories a catalog of format f has.
func (l Layout) dirs(f Format) []string {
	ds := []string{l.BackupDir, l.WalsDir, l.IncomingDir, l.StreamingDir, l.ErrorsDir, l.MetaDir, l.BaseDir, l.LockDir}
	if f == FormatBarman34 {
		ds = slices.DeleteFunc(ds, func(d string) bool { return d == l.MetaDir })
	}
	return ds
}

// IdentityPath is <bd>/identity.json.
func (l Layout) IdentityPath() string { return filepath.Join(l.BackupDir, "identity.json") }

// PrimaryInfoPath is <bd>/primary.info (passive node: last sync-info).
func (l Layout) PrimaryInfoPath() string { return filepath.Join(l.BackupDir, "primary.info") }

// SyncWALsInfoPath is wals/sync-wals.info (passive node sync position).
func (l Layout) SyncWALsInfoPath() string { return filepath.Join(l.WalsDir, "sync-wals.info") }

// MetaBackupInfoPath is the post-3.13.2 location meta/<id>-backup.info.
func (l Layout) MetaBackupInfoPath(id string) string {
	return filepath.Join(l.MetaDir, id+"-backup.info")
}

// LegacyBackupInfoPath is the pre-3.13.2 location base/<id>/backup.info.
func (l Layout) LegacyBackupInfoPath(id string) string {
	return filepath.Join(l.BaseDir, id, "backup.info")
}

// BackupInfoPath returns where backup id's backup.info is read from: the
// meta/ file when it exists, else the legacy base/<id>/backup.info when it
// exists, else where Catalog.Save would write it for the catalog's format.
func (l Layout) BackupInfoPath(id string) string {
	p := l.MetaBackupInfoPath(id)
	if exists(p) {
		return p
	}
	old := l.LegacyBackupInfoPath(id)
	if exists(old) {
		return old
	}
	if f, err := l.Format(); err == nil && f == FormatBarman34 {
		return old
	}
	return p
}

// BackupDirPath is base/<id>.
func (l Layout) BackupDirPath(id string) string { return filepath.Join(l.BaseDir, id) }

// BackupDataDir is base/<id>/data (backup layout v2).
func (l Layout) BackupDataDir(id string) string { return filepath.Join(l.BaseDir, id, "data") }

// XLogDBName returns the current xlog.db file name for a server.
func XLogDBName(server string) string { return server + "-xlog.db" }

// XLogDBPath returns the WAL catalog path: wals/<srv>-xlog.db when it
// exists, else a pre-3.13 wals/xlog.db when that exists, else the name the
// catalog's format uses (the new name when the format cannot be read).
func (l Layout) XLogDBPath() string {
	p := filepath.Join(l.WalsDir, XLogDBName(l.Server))
	if exists(p) {
		return p
	}
	old := filepath.Join(l.WalsDir, legacyXLogDBName)
	if exists(old) {
		return old
	}
	if f, err := l.Format(); err == nil && f == FormatBarman34 {
		return old
	}
	return p
}

// WALPath returns where an archived WAL file lives: wals/<hash>/<name>, or
// wals/<name> for history files.
func (l Layout) WALPath(name wal.Name) string {
	return filepath.Join(l.WalsDir, name.HashDir(), name.String())
}

// ErrorPath returns the errors/ path for a rejected incoming file:
// <name>.<UTC %Y%m%dT%H%M%SZ>.<kind>, kind being "duplicate" or "unknown".
func (l Layout) ErrorPath(name, kind string, t time.Time) string {
	return filepath.Join(l.ErrorsDir, name+"."+t.UTC().Format("20060102T150405Z")+"."+kind)
}

// LockPath returns LockDir/.<server>-<task>.lock.
func (l Layout) LockPath(task string) string {
	return filepath.Join(l.LockDir, lock.FileName(l.Server, task))
}

// BackupLockPath is the per-backup lock .<server>-<id>.lock (delete,
// check-backup, retention).
func (l Layout) BackupLockPath(id string) string { return l.LockPath(id) }

// XLogDBLockPath is the blocking .<server>-xlogdb.lock.
func (l Layout) XLogDBLockPath() string { return l.LockPath("xlogdb") }

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
