package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cellar-backup/cellar/internal/durable"
)

// ErrNotFound reports a backup id, name or shortcut that matches nothing.
var ErrNotFound = errors.New("backup not found")

// ErrAmbiguous reports a backup name shared by several backups.
var ErrAmbiguous = errors.New("backup name is ambiguous")

// Catalog navigates the backups of one server. It holds no cache: every
// call reads the directory, so several processes may share the catalog.
type Catalog struct {
	layout Layout
	ops    durable.Ops
}

// Open returns the catalog of a layout. It does no I/O.
func Open(l Layout) *Catalog { return &Catalog{layout: l, ops: durable.OS()} }

// OpenWithOps returns the catalog of a layout whose writes and removals go
// through ops (tests inject failures with it).
func OpenWithOps(l Layout, ops durable.Ops) *Catalog { return &Catalog{layout: l, ops: ops} }

// UnreadableError names a backup whose backup.info cannot be read or
// parsed. Backups and Available report one per such backup (joined);
// UnreadableBackups finds them again.
type UnreadableError struct {
	Server, ID, Path string
	Err              error
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("server %s: backup %s: unreadable %s: %v", e.Server, e.ID, e.Path, e.Err)
}

func (e *UnreadableError) Unwrap() error { return e.Err }

// UnreadableBackups returns every *UnreadableError inside err (which may
// be a join of several), in order.
func UnreadableBackups(err error) []*UnreadableError {
	var out []*UnreadableError
	var walk func(error)
	walk = func(e error) {
		var u *UnreadableError
		switch x := e.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, c := range x.Unwrap() {
				walk(c)
			}
		default:
			if errors.As(e, &u) {
				out = append(out, u)
			}
		}
	}
	walk(err)
	return out
}

// Layout returns the catalog's layout.
func (c *Catalog) Layout() Layout { return c.layout }

// backupIDs lists the ids that have a backup.info in either layout.
func (c *Catalog) backupIDs() ([]string, error) {
	seen := map[string]bool{}
	var errs []error
	entries, err := os.ReadDir(c.layout.MetaDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("server %s: list %s: %w", c.layout.Server, c.layout.MetaDir, err))
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), "-backup.info")
		if ok && IsBackupID(id) && !e.IsDir() {
			seen[id] = true
		}
	}
	entries, err = os.ReadDir(c.layout.BaseDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("server %s: list %s: %w", c.layout.Server, c.layout.BaseDir, err))
	}
	for _, e := range entries {
		if !e.IsDir() || !IsBackupID(e.Name()) || seen[e.Name()] {
			continue
		}
		if _, err := os.Stat(c.layout.LegacyBackupInfoPath(e.Name())); err == nil {
			seen[e.Name()] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, errors.Join(errs...)
}

// Backups returns every backup sorted by id (oldest first), from both
// meta/<id>-backup.info and legacy base/<id>/backup.info. Files that cannot
// be read or parsed are left out and reported in the returned error (one
// *UnreadableError per file, naming it), together with the readable
// backups. A backup with a delete_this marker has Status StatusDeleting.
func (c *Catalog) Backups() ([]*BackupInfo, error) {
	ids, err := c.backupIDs()
	errs := []error{err}
	out := make([]*BackupInfo, 0, len(ids))
	for _, id := range ids {
		b, err := c.read(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, b)
	}
	return out, errors.Join(errs...)
}

// read reads backup id's backup.info and its delete_this marker.
func (c *Catalog) read(id string) (*BackupInfo, error) {
	p := c.layout.BackupInfoPath(id)
	b, err := ReadBackupInfo(p)
	if err != nil {
		return nil, &UnreadableError{Server: c.layout.Server, ID: id, Path: p, Err: err}
	}
	b.ID = id
	deleting, err := c.HasDeleteThis(id)
	if err != nil {
		return nil, &UnreadableError{Server: c.layout.Server, ID: id, Path: p, Err: err}
	}
	if deleting {
		b.markDeleting()
	}
	return b, nil
}

// Get reads one backup. A missing backup.info matches ErrNotFound.
func (c *Catalog) Get(id string) (*BackupInfo, error) {
	if err := ParseBackupID(id); err != nil {
		return nil, fmt.Errorf("server %s: %w", c.layout.Server, err)
	}
	b, err := c.read(id)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("server %s: backup %s: %w", c.layout.Server, id, ErrNotFound)
		}
		return nil, err
	}
	return b, nil
}

func statusFilter(statuses []Status) []Status {
	if len(statuses) == 0 {
		return DefaultAvailable()
	}
	return statuses
}

// Available returns the backups whose status is in statuses (default
// WAITING_FOR_WALS and DONE; a DELETING backup matches none but
// StatusDeleting itself), oldest first. Like Backups, it returns the
// readable backups together with an error naming unreadable files.
func (c *Catalog) Available(statuses ...Status) ([]*BackupInfo, error) {
	all, err := c.Backups()
	filter := statusFilter(statuses)
	out := all[:0]
	for _, b := range all {
		if slices.Contains(filter, b.Status) {
			out = append(out, b)
		}
	}
	return out, err
}

func (c *Catalog) pick(statuses []Status, choose func([]*BackupInfo) *BackupInfo, what string) (*BackupInfo, error) {
	list, err := c.Available(statuses...)
	if b := choose(list); b != nil {
		return b, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("server %s: %s: %w", c.layout.Server, what, ErrNotFound)
}

// First returns the oldest backup with one of statuses (default available).
func (c *Catalog) First(statuses ...Status) (*BackupInfo, error) {
	return c.pick(statuses, func(l []*BackupInfo) *BackupInfo {
		if len(l) == 0 {
			return nil
		}
		return l[0]
	}, "first backup")
}

// Last returns the newest backup with one of statuses (default available).
func (c *Catalog) Last(statuses ...Status) (*BackupInfo, error) {
	return c.pick(statuses, func(l []*BackupInfo) *BackupInfo {
		if len(l) == 0 {
			return nil
		}
		return l[len(l)-1]
	}, "last backup")
}

// LastFull returns the newest available backup of type full or rsync.
func (c *Catalog) LastFull(statuses ...Status) (*BackupInfo, error) {
	return c.pick(statuses, func(l []*BackupInfo) *BackupInfo {
		for i := len(l) - 1; i >= 0; i-- {
			if l[i].IsFull() {
				return l[i]
			}
		}
		return nil
	}, "last full backup")
}

// LastFailed returns the newest FAILED backup.
func (c *Catalog) LastFailed() (*BackupInfo, error) {
	return c.Last(StatusFailed)
}

// Next returns the backup after id among statuses (default available).
func (c *Catalog) Next(id string, statuses ...Status) (*BackupInfo, error) {
	return c.pick(statuses, func(l []*BackupInfo) *BackupInfo {
		for _, b := range l {
			if b.ID > id {
				return b
			}
		}
		return nil
	}, "backup after "+id)
}

// Previous returns the backup before id among statuses (default available).
func (c *Catalog) Previous(id string, statuses ...Status) (*BackupInfo, error) {
	return c.pick(statuses, func(l []*BackupInfo) *BackupInfo {
		for i := len(l) - 1; i >= 0; i-- {
			if l[i].ID < id {
				return l[i]
			}
		}
		return nil
	}, "backup before "+id)
}

// Resolve turns a user reference into a backup: an id, a shortcut
// (latest|last, oldest|first, last-failed, latest-full|last-full) or a
// backup name.
func (c *Catalog) Resolve(ref string) (*BackupInfo, error) {
	switch ref {
	case "latest", "last":
		return c.Last()
	case "oldest", "first":
		return c.First()
	case "last-failed":
		return c.LastFailed()
	case "latest-full", "last-full":
		return c.LastFull()
	}
	if IsBackupID(ref) {
		return c.Get(ref)
	}
	all, err := c.Backups()
	var match []*BackupInfo
	for _, b := range all {
		if b.BackupName == ref {
			match = append(match, b)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("server %s: backup %q: %w", c.layout.Server, ref, ErrNotFound)
	}
	ids := make([]string, len(match))
	for i, b := range match {
		ids[i] = b.ID
	}
	return nil, fmt.Errorf("server %s: backup name %q matches %s: %w", c.layout.Server, ref, strings.Join(ids, ", "), ErrAmbiguous)
}

// Save writes b's backup.info durably where the catalog's format keeps
// it: meta/<id>-backup.info (3.13.2+, even for a backup read from the
// legacy location), or base/<id>/backup.info with only the keys Barman 3.4
// knows. A copy left in the other location (by an earlier Cellar) is
// removed, so that readers see one backup.info.
func (c *Catalog) Save(b *BackupInfo) error {
	if err := ParseBackupID(b.ID); err != nil {
		return fmt.Errorf("server %s: save: %w", c.layout.Server, err)
	}
	format, err := c.layout.Format()
	if err != nil {
		return err
	}
	data, err := b.MarshalFormat(format)
	if err != nil {
		return fmt.Errorf("server %s: %w", c.layout.Server, err)
	}
	path, stale := c.layout.MetaBackupInfoPath(b.ID), c.layout.LegacyBackupInfoPath(b.ID)
	if format == FormatBarman34 {
		path, stale = stale, path
	}
	if err := c.writeReplacing(path, stale, data); err != nil {
		return fmt.Errorf("server %s: backup %s: %w", c.layout.Server, b.ID, err)
	}
	return nil
}

// writeReplacing writes path durably (creating its directory), then
// removes stale, another location of the same file, when stale is in
// meta/: an older Cellar wrote there in Barman 3.4 catalogs, and readers
// prefer meta/. A legacy copy is left when meta/ gets the file, since
// readers then ignore it and a 3.17 catalog may keep old backups there.
func (c *Catalog) writeReplacing(path, stale string, data []byte) error {
	if err := c.ops.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := c.ops.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	if filepath.Dir(stale) != c.layout.MetaDir {
		return nil
	}
	err := c.ops.Remove(stale)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.ops.SyncDir(filepath.Dir(stale))
}

// Keep targets of the keep annotation.
const (
	KeepFull       = "full"
	KeepStandalone = "standalone"
)

// Annotation keys.
const (
	AnnotationKeep       = "keep"
	AnnotationDeleteThis = "delete_this"
)

func (c *Catalog) annotationPaths(id, key string) (meta, legacy string) {
	return filepath.Join(c.layout.MetaDir, id+"-"+key),
		filepath.Join(c.layout.BaseDir, id, "annotations", key)
}

// Annotation reads annotation key of backup id from meta/<id>-<key>, or
// the legacy base/<id>/annotations/<key>. ok is false when neither exists.
func (c *Catalog) Annotation(id, key string) (value string, ok bool, err error) {
	if err := ParseBackupID(id); err != nil {
		return "", false, err
	}
	meta, legacy := c.annotationPaths(id, key)
	for _, p := range []string{meta, legacy} {
		data, err := os.ReadFile(p)
		if err == nil {
			return strings.TrimSpace(string(data)), true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", false, fmt.Errorf("server %s: backup %s: annotation %s: %w", c.layout.Server, id, key, err)
		}
	}
	return "", false, nil
}

// SetAnnotation writes annotation key of backup id durably where the
// catalog's format keeps it: meta/<id>-<key>, or
// base/<id>/annotations/<key> in a Barman 3.4 catalog (no trailing
// newline, as Barman writes it).
func (c *Catalog) SetAnnotation(id, key, value string) error {
	if err := ParseBackupID(id); err != nil {
		return err
	}
	format, err := c.layout.Format()
	if err != nil {
		return err
	}
	path, stale := c.annotationPaths(id, key)
	if format == FormatBarman34 {
		path, stale = stale, path
	}
	if err := c.writeReplacing(path, stale, []byte(value)); err != nil {
		return fmt.Errorf("server %s: backup %s: annotation %s: %w", c.layout.Server, id, key, err)
	}
	return nil
}

// DeleteAnnotation removes the annotation in both locations; a missing
// annotation is not an error.
func (c *Catalog) DeleteAnnotation(id, key string) error {
	if err := ParseBackupID(id); err != nil {
		return err
	}
	meta, legacy := c.annotationPaths(id, key)
	for _, p := range []string{meta, legacy} {
		err := c.ops.Remove(p)
		if err == nil {
			if err := c.ops.SyncDir(filepath.Dir(p)); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("server %s: backup %s: annotation %s: %w", c.layout.Server, id, key, err)
		}
	}
	return nil
}

// Keep returns the keep target of a backup ("" when not kept).
func (c *Catalog) Keep(id string) (string, error) {
	v, _, err := c.Annotation(id, AnnotationKeep)
	return v, err
}

// SetKeep marks a backup as kept with target full or standalone.
func (c *Catalog) SetKeep(id, target string) error {
	if target != KeepFull && target != KeepStandalone {
		return fmt.Errorf("server %s: backup %s: invalid keep target %q", c.layout.Server, id, target)
	}
	return c.SetAnnotation(id, AnnotationKeep, target)
}

// ReleaseKeep removes a keep annotation.
func (c *Catalog) ReleaseKeep(id string) error { return c.DeleteAnnotation(id, AnnotationKeep) }

// MarkDeleteThis writes the delete_this marker ("delete") that forces a
// half-deleted backup to be deleted again.
func (c *Catalog) MarkDeleteThis(id string) error {
	return c.SetAnnotation(id, AnnotationDeleteThis, "delete")
}

// HasDeleteThis reports whether a backup carries the delete_this marker.
func (c *Catalog) HasDeleteThis(id string) (bool, error) {
	_, ok, err := c.Annotation(id, AnnotationDeleteThis)
	return ok, err
}

// ClearDeleteThis removes the delete_this marker.
func (c *Catalog) ClearDeleteThis(id string) error {
	return c.DeleteAnnotation(id, AnnotationDeleteThis)
}

// PendingDeletions lists, sorted, the ids that carry a delete_this marker
// in either location, whether or not their backup.info still exists: a
// delete interrupted after removing backup.info leaves only the marker
// and the remains of base/<id>.
func (c *Catalog) PendingDeletions() ([]string, error) {
	seen := map[string]bool{}
	entries, err := os.ReadDir(c.layout.MetaDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("server %s: list %s: %w", c.layout.Server, c.layout.MetaDir, err)
	}
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), "-"+AnnotationDeleteThis); ok && IsBackupID(id) {
			seen[id] = true
		}
	}
	entries, err = os.ReadDir(c.layout.BaseDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("server %s: list %s: %w", c.layout.Server, c.layout.BaseDir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || !IsBackupID(e.Name()) || seen[e.Name()] {
			continue
		}
		_, legacy := c.annotationPaths(e.Name(), AnnotationDeleteThis)
		if _, err := os.Stat(legacy); err == nil {
			seen[e.Name()] = true
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}
