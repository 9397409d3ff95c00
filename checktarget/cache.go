package checktarget

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
)

// The exporter keeps one Target per server for its whole life and
// re-evaluates the probes every min_probe_interval. Re-reading a large
// catalog each time (1000 backup.info files and 100k xlog.db lines per
// server) cost seconds, so a Target remembers what it has parsed: each
// backup.info by its file identity, and a running WAL summary with the
// xlog.db offset it stopped at. Both caches are guarded by their own
// mutex, so concurrent scrapes (and concurrent probes of one run) are
// safe; they give the same answers as a fresh read.

// fileID identifies one version of a file: a rewrite (durable writes
// rename a new inode over the old one) or an in-place change alters it.
type fileID struct {
	size  int64
	mtime int64 // ns
	dev   uint64
	ino   uint64
}

func idOf(fi fs.FileInfo) fileID {
	dev, ino := devIno(fi)
	return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano(), dev: dev, ino: ino}
}

type cachedInfo struct {
	id fileID
	b  checks.Backup
}

// backupItem is a candidate backup.info found by listing meta/ and base/.
type backupItem struct {
	id, path string
	meta     bool // meta/<id>-backup.info, else base/<id>/backup.info
	// deleting: a delete_this marker was listed; the backup is shown
	// DELETING whatever its backup.info says (creating or removing the
	// marker changes meta/, which forces a new listing).
	deleting bool
}

// shown is the backup as the probes see it: DELETING while a delete_this
// marker is present, as catalog.Catalog shows it.
func (it backupItem) shown(b checks.Backup) checks.Backup {
	if it.deleting {
		b.Status = checks.StatusDeleting
	}
	return b
}

// restatSlices: while meta/ and base/ are unchanged, a DONE or FAILED
// backup's file is stat'ed every restatSlices-th evaluation (in turn, a
// slice of them each time) instead of every time: with the exporter's
// 15 s minimum probe interval, within 4 minutes. Measured on 20 servers
// × 1000 backups (2-core VM), stat'ing all 20 000 files took ~80-100 ms
// of CPU per evaluation, more than the whole scrape may take.
const restatSlices = 16

// quietFor is how old a directory's mtime must be, when it is listed, for
// an unchanged mtime to prove later that its entries did not change:
// file systems with coarse timestamps could otherwise hide a change made
// in the same tick as the listing.
const quietFor = 2 * time.Second

// backupCache holds the parsed backup.info files of one server, by path,
// and the last listing of meta/ and base/ with those directories'
// identities.
type backupCache struct {
	mu    sync.Mutex
	files map[string]cachedInfo

	listed           bool // items is valid for metaDir/baseDir
	quiet            bool // both directories were quiet when listed
	metaDir, baseDir fileID
	items            []backupItem
	gen              int // evaluations since the listing, for restatSlices

	// ver counts changes worth saving (state.go): the listing, the
	// directories' identities, a file parsed or dropped. gen alone does
	// not count (it moves every evaluation).
	ver uint64
}

func dirID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileID{}, nil
	}
	if err != nil {
		return fileID{}, err
	}
	return idOf(fi), nil
}

// final statuses are those a backup.info keeps once reached (Cellar and
// Barman only rewrite it then to add children or on deletion, which
// changes base/ or meta/).
func final(status string) bool { return status == checks.StatusDone || status == checks.StatusFailed }

// backups returns the catalog's backups as catalog.Catalog.Backups does
// (meta/<id>-backup.info first, then legacy base/<id>/backup.info, sorted
// by id; unreadable files left out and named in the error), parsing only
// files whose identity (size, mtime, device, inode) changed.
//
// Which files exist is taken from the previous listing while meta/ and
// base/ keep their identity (every creation, rename and removal in a
// directory changes its mtime, and backup.info files are written by
// rename). Files of backups not DONE or FAILED, and legacy directories
// without a backup.info yet, are stat'ed every time; the others in turn,
// a slice per evaluation (restatSlices). Entries of vanished files are
// dropped. Files that fail to parse are not cached, so the next call
// retries them.
func (c *backupCache) backups(l catalog.Layout) ([]checks.Backup, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = map[string]cachedInfo{}
	}
	var errs []error
	metaDir, err1 := dirID(l.MetaDir)
	baseDir, err2 := dirID(l.BaseDir)
	full := err1 != nil || err2 != nil || !c.listed || !c.quiet || metaDir != c.metaDir || baseDir != c.baseDir
	if full {
		listedAt := time.Now()
		items, err := listBackups(l)
		listed := err == nil && err1 == nil && err2 == nil
		quiet := listedAt.Sub(time.Unix(0, metaDir.mtime)) > quietFor && listedAt.Sub(time.Unix(0, baseDir.mtime)) > quietFor
		if listed != c.listed || quiet != c.quiet || metaDir != c.metaDir || baseDir != c.baseDir || !slices.Equal(items, c.items) {
			c.ver++
		}
		c.listed, c.quiet = listed, quiet
		c.metaDir, c.baseDir, c.items, c.gen = metaDir, baseDir, items, 0
		if err != nil {
			errs = append(errs, err)
		}
	} else {
		c.gen++
	}

	out := make([]checks.Backup, 0, len(c.items))
	for i, it := range c.items {
		ci, cached := c.files[it.path]
		if !full && cached && final(ci.b.Status) && i%restatSlices != c.gen%restatSlices {
			out = append(out, it.shown(ci.b))
			continue
		}
		fi, err := os.Stat(it.path)
		if err != nil {
			c.drop(it.path)
			if it.meta {
				// A meta/ file that vanished since the listing is an
				// error, as for the catalog; a base/<id> directory
				// without a readable backup.info is not a backup.
				errs = append(errs, fmt.Errorf("server %s: backup %s: read backup.info: %w", l.Server, it.id, err))
			}
			continue
		}
		fid := idOf(fi)
		if cached && ci.id == fid {
			out = append(out, it.shown(ci.b))
			continue
		}
		info, err := catalog.ReadBackupInfo(it.path)
		if err != nil {
			c.drop(it.path)
			errs = append(errs, fmt.Errorf("server %s: backup %s: %w", l.Server, it.id, err))
			continue
		}
		info.ID = it.id
		b := toBackup(info)
		c.files[it.path] = cachedInfo{id: fid, b: b}
		c.ver++
		out = append(out, it.shown(b))
	}
	if full {
		c.sweep()
	}
	return out, errors.Join(errs...)
}

// sweep drops the cached files of backups no longer listed (those that
// vanished from a listed place were dropped when their stat failed).
func (c *backupCache) sweep() {
	listed := make(map[string]bool, len(c.items))
	for _, it := range c.items {
		listed[it.path] = true
	}
	for p := range c.files {
		if !listed[p] {
			c.drop(p)
		}
	}
}

func (c *backupCache) drop(path string) {
	if _, ok := c.files[path]; ok {
		delete(c.files, path)
		c.ver++
	}
}

// listBackups finds the candidate backup.info files like the catalog's
// backupIDs: meta/<id>-backup.info, and base/<id>/ directories not
// already found in meta/ (whether they hold a backup.info is decided by
// the caller's stat).
func listBackups(l catalog.Layout) ([]backupItem, error) {
	var errs []error
	var items []backupItem
	seen := map[string]bool{}
	entries, err := os.ReadDir(l.MetaDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("server %s: list %s: %w", l.Server, l.MetaDir, err))
	}
	marked := map[string]bool{}
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), "-"+catalog.AnnotationDeleteThis); ok {
			marked[id] = true
		}
		id, ok := strings.CutSuffix(e.Name(), "-backup.info")
		if ok && catalog.IsBackupID(id) && !e.IsDir() {
			seen[id] = true
			items = append(items, backupItem{id: id, path: l.MetaBackupInfoPath(id), meta: true})
		}
	}
	entries, err = os.ReadDir(l.BaseDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("server %s: list %s: %w", l.Server, l.BaseDir, err))
	}
	for _, e := range entries {
		if e.IsDir() && catalog.IsBackupID(e.Name()) && !seen[e.Name()] {
			items = append(items, backupItem{id: e.Name(), path: l.LegacyBackupInfoPath(e.Name())})
		}
	}
	for i := range items {
		items[i].deleting = marked[items[i].id] || legacyMarked(l, items[i].id)
	}
	slices.SortFunc(items, func(a, b backupItem) int { return strings.Compare(a.id, b.id) })
	return items, errors.Join(errs...)
}

// legacyMarked reports a delete_this marker in the pre-3.13.2 location,
// base/<id>/annotations/delete_this.
func legacyMarked(l catalog.Layout, id string) bool {
	_, err := os.Stat(filepath.Join(l.BackupDirPath(id), "annotations", catalog.AnnotationDeleteThis))
	return err == nil
}

func toBackup(b *catalog.BackupInfo) checks.Backup {
	cb := checks.Backup{
		ID: b.ID, Status: string(b.Status), BeginTime: b.BeginTime, EndTime: b.EndTime,
		BeginWAL: b.BeginWAL, EndWAL: b.EndWAL, Timeline: uint32(b.Timeline),
		ParentID: b.ParentBackupID, WALSegmentSize: uint64(b.XLogSegmentSize),
	}
	if b.Size != nil {
		cb.Size = *b.Size
	}
	return cb
}

// walCache is the running WAL summary of one server: the accumulator fed
// with every complete xlog.db line before offset, in the file identified
// by dev/ino. tail is the last line consumed (ending at offset): if the
// bytes there differ next time, the file was rewritten in place and is
// read again from the start.
type walCache struct {
	mu       sync.Mutex
	valid    bool
	dev, ino uint64
	offset   int64
	tail     []byte
	acc      *checks.WALAccumulator
	// fullReads counts reads from offset 0 (tests check that appends do
	// not cause one).
	fullReads int
	// ver counts changes worth saving (state.go).
	ver uint64
}

// summary brings the running summary up to date with xlog.db at path and
// returns it for backups. Appends are read from the previous offset; a
// different inode, a shorter file, changed bytes before the offset or a
// change of the backups the summary depends on (newest or oldest
// available) start over from the beginning.
//
// No xlog.db lock is taken: appends are whole lines written at the end
// and rewrites rename a complete file over the old one, so an open file
// always reads as a sequence of complete lines possibly followed by a
// fragment, which is left for the next call.
func (c *walCache) summary(ctx context.Context, path string, backups []checks.Backup) (*checks.WALSummary, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	wasValid, wasOffset := c.valid, c.offset
	defer func() {
		if c.valid != wasValid || c.offset != wasOffset {
			c.ver++
		}
	}()
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		c.valid = false
		return checks.NewWALAccumulator(backups).Summary(backups), nil
	}
	if err != nil {
		return nil, fmt.Errorf("xlog.db %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("xlog.db %s: %w", path, err)
	}
	dev, ino := devIno(fi)
	reuse := c.valid && c.dev == dev && c.ino == ino && fi.Size() >= c.offset && c.acc.Matches(backups)
	if reuse && len(c.tail) > 0 {
		got := make([]byte, len(c.tail))
		_, err := f.ReadAt(got, c.offset-int64(len(c.tail)))
		reuse = err == nil && bytes.Equal(got, c.tail)
	}
	if !reuse {
		c.valid, c.dev, c.ino, c.offset, c.tail = true, dev, ino, 0, c.tail[:0]
		c.acc = checks.NewWALAccumulator(backups)
		c.fullReads++
		c.ver++
	}
	if err := c.readFrom(ctx, f, path); err != nil {
		return nil, err
	}
	return c.acc.Summary(backups), nil
}

// readFrom feeds the complete lines from c.offset on into the
// accumulator. Progress is kept line by line, so an interrupted read
// (cancelled context, bad line) resumes where it stopped next time.
func (c *walCache) readFrom(ctx context.Context, f *os.File, path string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("xlog.db %s: read: %w", path, err)
	}
	if _, err := f.Seek(c.offset, io.SeekStart); err != nil {
		return fmt.Errorf("xlog.db %s: %w", path, err)
	}
	n := 0
	return catalog.ScanXLogLines(path, f, c.offset, func(e catalog.XLogEntry, line []byte) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("xlog.db %s: read: %w", path, err)
			}
		}
		c.acc.Add(toWAL(e.WALInfo))
		c.offset = e.Offset + int64(len(line))
		c.tail = append(c.tail[:0], line...)
		return nil
	})
}

func toWAL(w catalog.WALInfo) checks.WAL {
	return checks.WAL{Name: w.Name, Size: w.Size, Time: w.ModTime()}
}
