package passive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/wal"
)

// ErrCompressionMismatch reports a passive whose WAL compression differs
// from the primary's (Barman refuses to sync WALs then).
var ErrCompressionMismatch = errors.New("WAL compression differs between primary and passive")

// WALSyncResult tells what one sync-wals pass did.
type WALSyncResult struct {
	Copied   int    // WAL files fetched and appended to xlog.db
	Skipped  string // why nothing was done ("" when it ran)
	LastWAL  string // sync-wals.info after the pass
	Position int64
}

func normCompression(c string) string {
	if c == "none" || c == "None" {
		return ""
	}
	return c
}

// SyncWALs copies the WAL files listed in primary.info that the passive does
// not have yet (seed sync_wals), under the blocking .<srv>-sync-wal.lock:
// fetch them as a tar stream from the primary, store each durably in
// wals/<hash>/, append the primary's xlog.db lines, and only then write
// sync-wals.info, so that a crash in between fetches again instead of
// skipping. Lines already in the local xlog.db are not appended twice.
func SyncWALs(ctx context.Context, opts Options) (WALSyncResult, error) {
	var res WALSyncResult
	if err := opts.check(); err != nil {
		return res, err
	}
	layout := opts.Layout
	log := opts.logger().With("server", opts.Server)
	if err := layout.MakeDirs(); err != nil {
		return res, err
	}
	lk, err := lock.Acquire(ctx, layout.LockPath("sync-wal"))
	if err != nil {
		return res, fmt.Errorf("server %s: sync-wals: %w", opts.Server, err)
	}
	defer lk.Release()

	primary, err := LoadPrimaryInfo(layout)
	if err != nil {
		return res, err
	}
	if pc, lc := primary.Compression(), normCompression(opts.Compression); pc != "" && lc != "" && pc != lc {
		return res, fmt.Errorf("server %s: primary %q, passive %q: %w", opts.Server, pc, lc, ErrCompressionMismatch)
	}
	state, err := LoadSyncWALsInfo(layout)
	if err != nil {
		return res, err
	}
	res.LastWAL, res.Position = state.LastWAL, state.LastPosition
	if primary.LastName == "" {
		res.Skipped = "the primary has no WAL"
		return res, nil
	}
	cat := catalog.Open(layout)
	first, err := cat.First(catalog.StatusDone)
	if errors.Is(err, catalog.ErrNotFound) {
		// Barman skips too: WALs are useful only with a backup. The
		// position is not advanced, so they are fetched once a backup is.
		res.Skipped = "no local backup"
		log.Info("sync-wals skipped: no local backup yet")
		return res, nil
	}
	if err != nil {
		return res, err
	}
	// Segments older than the first local backup serve no recovery.
	var todo []catalog.WALInfo
	for _, w := range primary.WALs {
		if state.LastWAL != "" && w.Name <= state.LastWAL {
			continue
		}
		if isSegmentLike(w.Name) && first.BeginWAL != "" && segmentPart(w.Name) < first.BeginWAL {
			continue
		}
		todo = append(todo, w)
	}
	if len(todo) > 0 {
		// Read the local catalog before any file lands: a missing xlog.db
		// is rebuilt from wals/ on first access, and a rebuild after the
		// copy would record the files' own metadata instead of the
		// primary's lines.
		present, err := presentNames(ctx, layout, todo)
		if err != nil {
			return res, err
		}
		if err := fetchWALs(ctx, opts, todo); err != nil {
			return res, err
		}
		var add []catalog.WALInfo
		for _, w := range todo {
			if !present[w.Name] {
				add = append(add, w)
				present[w.Name] = true
			}
		}
		if err := catalog.OpenXLogDB(layout).Append(ctx, add...); err != nil {
			return res, err
		}
	}
	next := SyncWALsInfo{LastWAL: primary.LastName, LastPosition: primary.LastPosition}
	if state.LastWAL != "" && next.LastWAL < state.LastWAL {
		// primary.info older than our own progress (a stale file): keep it.
		next = state
	}
	if err := WriteSyncWALsInfo(layout, next); err != nil {
		return res, err
	}
	res.Copied, res.LastWAL, res.Position = len(todo), next.LastWAL, next.LastPosition
	log.Info("sync-wals done", "copied", len(todo), "last_wal", next.LastWAL)
	return res, nil
}

// presentNames reports which of todo the local xlog.db already lists (a
// previous pass that crashed before writing sync-wals.info).
func presentNames(ctx context.Context, layout catalog.Layout, todo []catalog.WALInfo) (map[string]bool, error) {
	want := make(map[string]bool, len(todo))
	for _, w := range todo {
		want[w.Name] = true
	}
	present := make(map[string]bool)
	err := catalog.OpenXLogDB(layout).Scan(ctx, func(w catalog.WALInfo) error {
		if want[w.Name] {
			present[w.Name] = true
		}
		return nil
	})
	return present, err
}

// fetchWALs streams the files from the primary into wals/.
func fetchWALs(ctx context.Context, opts Options, todo []catalog.WALInfo) error {
	layout := opts.Layout
	byName := make(map[string]catalog.WALInfo, len(todo))
	var names strings.Builder
	for _, w := range todo {
		byName[w.Name] = w
		names.WriteString(w.Name)
		names.WriteByte('\n')
	}
	seen := 0
	err := opts.runRemote(ctx, strings.NewReader(names.String()), func(r io.Reader) error {
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read stream: %w", err)
			}
			w, ok := byName[hdr.Name]
			if !ok || hdr.Typeflag != tar.TypeReg {
				return fmt.Errorf("unexpected member %q", hdr.Name)
			}
			if err := storeWAL(layout, w, hdr, tr); err != nil {
				return err
			}
			seen++
		}
	}, "sync-wals-send", opts.Server)
	if err != nil {
		return err
	}
	if seen != len(todo) {
		return fmt.Errorf("server %s: sync-wals: received %d of %d WAL files", opts.Server, seen, len(todo))
	}
	return nil
}

func storeWAL(layout catalog.Layout, w catalog.WALInfo, hdr *tar.Header, r io.Reader) error {
	n, err := wal.ParseName(w.Name)
	if err != nil {
		return err
	}
	path := layout.WALPath(n)
	if err := durable.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	pf, err := durable.NewPendingFile(path, 0o600)
	if err != nil {
		return err
	}
	defer pf.Cleanup()
	got, err := io.Copy(pf, r)
	if err != nil {
		return fmt.Errorf("WAL %s: %w", w.Name, err)
	}
	if got != w.Size {
		return fmt.Errorf("WAL %s: received %d bytes, xlog.db says %d", w.Name, got, w.Size)
	}
	// mtime before the rename, so the durable file carries it.
	if err := os.Chtimes(pf.Name(), hdr.ModTime, hdr.ModTime); err != nil {
		return fmt.Errorf("WAL %s: %w", w.Name, err)
	}
	if err := pf.Commit(); err != nil {
		return fmt.Errorf("WAL %s: %w", w.Name, err)
	}
	return nil
}
