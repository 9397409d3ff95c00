package passive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/lock"
)

// Outcomes of CheckSyncRequired (Barman's SyncNothingToDo, SyncToBeDeleted
// and SyncError).
var (
	ErrSyncNothingToDo  = errors.New("nothing to synchronise")
	ErrSyncToBeDeleted  = errors.New("backup is not on the primary and failed locally: to be deleted")
	ErrSyncNotOnPrimary = errors.New("backup is neither on the primary nor local")
)

// ErrSyncVerify reports a copied backup that does not match what the primary
// sent or its backup_manifest.
var ErrSyncVerify = errors.New("synchronised backup does not verify")

// syncLockTask is the per-backup lock task: .<srv>-<id>-sync-backup.lock.
func syncLockTask(id string) string { return id + "-sync-backup" }

// localStatus is the status of a local backup as sync sees it: a SYNCING
// backup whose sync lock is free was interrupted (kill -9, crash) and
// counts as FAILED.
func localStatus(layout catalog.Layout, b *catalog.BackupInfo) catalog.Status {
	if b == nil {
		return ""
	}
	if b.Status == catalog.StatusSyncing {
		if _, held, err := lock.Holder(layout.LockPath(syncLockTask(b.ID))); err == nil && !held {
			return catalog.StatusFailed
		}
	}
	return b.Status
}

// CheckSyncRequired decides what sync-backup does with id (seed
// check_sync_required): nil = copy it; ErrSyncNothingToDo, ErrSyncToBeDeleted
// or ErrSyncNotOnPrimary otherwise. local is nil when the backup does not
// exist locally. obsolete (optional) is the local retention verdict.
func CheckSyncRequired(layout catalog.Layout, id string, primary *Info, local *catalog.BackupInfo, obsolete func(*catalog.BackupInfo) bool) error {
	remote, onPrimary := primary.Backups[id]
	st := localStatus(layout, local)
	if !onPrimary {
		switch {
		case local == nil:
			return fmt.Errorf("server %s: backup %s: %w", layout.Server, id, ErrSyncNotOnPrimary)
		case st == catalog.StatusFailed:
			return fmt.Errorf("server %s: backup %s: %w", layout.Server, id, ErrSyncToBeDeleted)
		}
		return fmt.Errorf("server %s: backup %s is %s locally and gone from the primary: %w", layout.Server, id, st, ErrSyncNothingToDo)
	}
	if local != nil && st != catalog.StatusFailed {
		return fmt.Errorf("server %s: backup %s is already %s locally: %w", layout.Server, id, st, ErrSyncNothingToDo)
	}
	if obsolete != nil && obsolete(remote) {
		return fmt.Errorf("server %s: backup %s is obsolete under the local retention policy: %w", layout.Server, id, ErrSyncNothingToDo)
	}
	return nil
}

// IsBackupLocallyObsolete reports a local backup that must be removed: the
// primary no longer has it and the local copy is FAILED (an interrupted
// SYNCING counts as FAILED).
func IsBackupLocallyObsolete(layout catalog.Layout, primary *Info, local *catalog.BackupInfo) bool {
	if local == nil {
		return false
	}
	_, onPrimary := primary.Backups[local.ID]
	return !onPrimary && localStatus(layout, local) == catalog.StatusFailed
}

// RemoveLocalBackup deletes a local backup's directory and then its
// backup.info (in both locations), under the per-backup lock; an
// interrupted removal leaves the info, so it is retried.
func RemoveLocalBackup(ctx context.Context, layout catalog.Layout, id string) error {
	if err := catalog.ParseBackupID(id); err != nil {
		return err
	}
	lk, err := lock.TryLock(layout.BackupLockPath(id))
	if err != nil {
		return fmt.Errorf("server %s: backup %s: %w", layout.Server, id, err)
	}
	defer lk.Release()
	if err := os.RemoveAll(layout.BackupDirPath(id)); err != nil {
		return fmt.Errorf("server %s: backup %s: %w", layout.Server, id, err)
	}
	if err := durable.SyncDir(layout.BaseDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, p := range []string{layout.MetaBackupInfoPath(id), filepath.Join(layout.MetaDir, id+"-keep"), filepath.Join(layout.MetaDir, id+"-delete_this")} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("server %s: backup %s: %w", layout.Server, id, err)
		}
	}
	if err := durable.SyncDir(layout.MetaDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return ctx.Err()
}

// SyncBackup copies backup id from the primary (seed sync_backup). It takes
// the per-backup sync lock, decides with CheckSyncRequired (deleting a local
// FAILED backup the primary no longer has), marks the local copy SYNCING,
// streams base/<id>/ over the ssh command (skipping files already present
// and intact, so a killed sync resumes), verifies it, and marks it DONE, or
// FAILED with Barman's "failure syncing ..." error.
func SyncBackup(ctx context.Context, opts Options, id string) (err error) {
	if err := opts.check(); err != nil {
		return err
	}
	if err := catalog.ParseBackupID(id); err != nil {
		return fmt.Errorf("server %s: %w", opts.Server, err)
	}
	layout := opts.Layout
	log := opts.logger().With("server", opts.Server, "backup_id", id)
	if err := layout.MakeDirs(); err != nil {
		return err
	}
	lk, err := lock.TryLock(layout.LockPath(syncLockTask(id)))
	if err != nil {
		return fmt.Errorf("server %s: sync-backup %s: %w", opts.Server, id, err)
	}
	defer lk.Release()

	primary, err := LoadPrimaryInfo(layout)
	if errors.Is(err, fs.ErrNotExist) {
		if primary, err = FetchInfo(ctx, opts, "", 0); err == nil {
			err = WritePrimaryInfo(layout, primary)
		}
	}
	if err != nil {
		return err
	}
	cat := catalog.Open(layout)
	local, err := cat.Get(id)
	if errors.Is(err, catalog.ErrNotFound) {
		local, err = nil, nil
	}
	if err != nil {
		return err
	}
	// Under our own lock the SYNCING status can only be stale.
	if local != nil && local.Status == catalog.StatusSyncing {
		local.Status = catalog.StatusFailed
	}
	if cerr := CheckSyncRequired(layout, id, primary, local, opts.Obsolete); cerr != nil {
		switch {
		case errors.Is(cerr, ErrSyncNothingToDo):
			log.Info("sync-backup: nothing to do", "reason", cerr.Error())
			return nil
		case errors.Is(cerr, ErrSyncToBeDeleted):
			log.Info("sync-backup: removing local backup missing on the primary")
			lk.Release()
			return RemoveLocalBackup(ctx, layout, id)
		}
		return cerr
	}

	syncing := primary.Backups[id]
	syncing.ID = id
	syncing.Status = catalog.StatusSyncing
	syncing.Error = ""
	if err := cat.Save(syncing); err != nil {
		return err
	}
	log.Info("sync-backup: copying from the primary")
	defer func() {
		if err == nil {
			return
		}
		failed := *syncing
		failed.Status = catalog.StatusFailed
		failed.Error = fmt.Sprintf("failure syncing server %s backup %s: %s", opts.Server, id, compactErr(err))
		// Record the failure even when ctx was cancelled.
		if serr := cat.Save(&failed); serr != nil {
			err = errors.Join(err, serr)
		}
	}()

	infoData, err := receiveBackup(ctx, opts, id)
	if err != nil {
		return err
	}
	if err := verifyManifest(layout.BackupDirPath(id)); err != nil {
		return fmt.Errorf("server %s: backup %s: %w", opts.Server, id, err)
	}
	final, err := catalog.ParseBackupInfo(infoData, "primary backup.info")
	if err != nil {
		return fmt.Errorf("server %s: backup %s: %w", opts.Server, id, err)
	}
	final.ID = id
	final.Status = catalog.StatusDone
	if err := cat.Save(final); err != nil {
		return err
	}
	log.Info("sync-backup: done")
	return nil
}

// localFiles hashes the regular files already in dir (the resume list).
func localFiles(ctx context.Context, dir string) ([]FileState, error) {
	var out []FileState
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, werr error) error {
		if werr != nil {
			if errors.Is(werr, fs.ErrNotExist) {
				return nil
			}
			return werr
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sum, err := sha256File(path)
		if err != nil {
			return err
		}
		out = append(out, FileState{Path: filepath.ToSlash(rel), Type: "file", Size: fi.Size(), SHA256: sum})
		return nil
	})
	return out, err
}

// receiveBackup runs sync-backup-send on the primary and extracts the
// stream into base/<id>/. It returns the primary's backup.info bytes.
func receiveBackup(ctx context.Context, opts Options, id string) ([]byte, error) {
	layout := opts.Layout
	dir := layout.BackupDirPath(id)
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	have, err := localFiles(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("server %s: backup %s: scan local copy: %w", opts.Server, id, err)
	}
	haveBy := make(map[string]FileState, len(have))
	for _, h := range have {
		haveBy[h.Path] = h
	}
	stdin, err := json.Marshal(have)
	if err != nil {
		return nil, err
	}
	var infoData []byte
	var list []FileState
	got := map[string]string{} // path -> sha256 of what was written
	err = opts.runRemote(ctx, bytes.NewReader(stdin), func(r io.Reader) error {
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read stream: %w", err)
			}
			switch name := hdr.Name; {
			case name == entryBackupInfo:
				if infoData, err = io.ReadAll(io.LimitReader(tr, 1<<24)); err != nil {
					return err
				}
			case name == entryFileList:
				data, err := io.ReadAll(tr)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(data, &list); err != nil {
					return fmt.Errorf("file list: %w", err)
				}
			case strings.HasPrefix(name, entryBasePrefix):
				rel := strings.TrimSuffix(strings.TrimPrefix(name, entryBasePrefix), "/")
				if !filepath.IsLocal(rel) || sendExcluded(rel) {
					return fmt.Errorf("unsafe or reserved member %q", name)
				}
				sum, err := extract(dir, rel, hdr, tr)
				if err != nil {
					return err
				}
				if sum != "" {
					got[rel] = sum
				}
			default:
				return fmt.Errorf("unexpected member %q", name)
			}
		}
	}, "sync-backup-send", opts.Server, id, "--resume")
	if err != nil {
		return nil, err
	}
	if infoData == nil || list == nil {
		return nil, fmt.Errorf("server %s: backup %s: %w: incomplete stream (no backup.info or file list)", opts.Server, id, ErrSyncVerify)
	}
	return infoData, finishTree(dir, list, got, haveBy)
}

// extract writes one member under dir; files go through a durable pending
// file so a file with its final name is always complete.
func extract(dir, rel string, hdr *tar.Header, r io.Reader) (string, error) {
	path := filepath.Join(dir, filepath.FromSlash(rel))
	switch hdr.Typeflag {
	case tar.TypeDir:
		return "", durable.MkdirAll(path, 0o700)
	case tar.TypeSymlink:
		if err := durable.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", err
		}
		if err := os.RemoveAll(path); err != nil {
			return "", err
		}
		if err := os.Symlink(hdr.Linkname, path); err != nil {
			return "", err
		}
		return "", durable.SyncDir(filepath.Dir(path))
	case tar.TypeReg:
		if err := durable.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", err
		}
		pf, err := durable.NewPendingFile(path, os.FileMode(hdr.Mode).Perm()|0o600)
		if err != nil {
			return "", err
		}
		defer pf.Cleanup()
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(pf, h), r)
		if err != nil {
			return "", fmt.Errorf("%s: %w", rel, err)
		}
		if n != hdr.Size {
			return "", fmt.Errorf("%s: got %d of %d bytes", rel, n, hdr.Size)
		}
		if err := pf.Commit(); err != nil {
			return "", err
		}
		if err := os.Chtimes(path, hdr.ModTime, hdr.ModTime); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	return "", fmt.Errorf("%s: unsupported member type %q", rel, hdr.Typeflag)
}

// finishTree checks every file against the primary's list (size and
// SHA-256 of what was written, or of the kept local file), removes local
// entries the primary does not have (leftovers of an interrupted run), and
// restores modes and times.
func finishTree(dir string, list []FileState, got map[string]string, have map[string]FileState) error {
	want := make(map[string]FileState, len(list))
	for _, f := range list {
		want[f.Path] = f
	}
	var problems []string
	for _, f := range list {
		if !filepath.IsLocal(f.Path) {
			return fmt.Errorf("%w: unsafe path %q in file list", ErrSyncVerify, f.Path)
		}
		if f.Type != "file" {
			continue
		}
		sum, ok := got[f.Path]
		if !ok {
			h, kept := have[f.Path]
			if !kept || h.Size != f.Size {
				problems = append(problems, f.Path+": missing")
				continue
			}
			sum = h.SHA256
		}
		if sum != f.SHA256 {
			problems = append(problems, f.Path+": checksum mismatch")
		}
	}
	if len(problems) > 0 {
		if len(problems) > 5 {
			problems = append(problems[:5], "...")
		}
		return fmt.Errorf("%w: %s", ErrSyncVerify, strings.Join(problems, "; "))
	}
	// Remove extras, deepest first (WalkDir is lexical; collect then reverse).
	var extras []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, werr error) error {
		if werr != nil {
			return werr
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if _, ok := want[rel]; !ok && !sendExcluded(rel) {
			extras = append(extras, path)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range extras {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if err := durable.SyncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	// Modes and times last: directory mtimes change while files land.
	for i := len(list) - 1; i >= 0; i-- {
		f := list[i]
		if f.Type == "symlink" {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if f.Mode != 0 {
			if err := os.Chmod(p, os.FileMode(f.Mode).Perm()); err != nil {
				return err
			}
		}
		if f.MTime != 0 {
			t := time.Unix(0, f.MTime)
			if err := os.Chtimes(p, t, t); err != nil {
				return err
			}
		}
	}
	return durable.SyncDir(dir)
}
