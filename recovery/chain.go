package recovery

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
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/incremental"
	"github.com/cellar-backup/cellar/internal/lock"
)

// chain is an incremental backup's chain, full backup first, opened for
// reading, with the plan of how each restored file is produced.
type chain struct {
	members []*chainMember
	plan    *incremental.Plan
	locks   []*lock.Lock

	rebuilt  atomic.Int64
	sizeOnly atomic.Int64
}

// report adds the chain's figures to a restore's result.
func (c *chain) report(res *Result) {
	for _, m := range c.members {
		res.Chain = append(res.Chain, m.info.ID)
	}
	res.Reconstructed = int(c.rebuilt.Load())
	res.SizeOnly = int(c.sizeOnly.Load())
	if res.SizeOnly > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d of %d rebuilt files: their INCREMENTAL file in backup %s was checked by size only",
			res.SizeOnly, res.Reconstructed, res.BackupID))
	}
}

// chainMember is one backup of a chain, readable by manifest path.
type chainMember struct {
	info     *catalog.BackupInfo
	trees    []source
	archives map[uint32]*os.File // open uncompressed tar per tree oid
	index    map[uint32]*incremental.TarIndex
	manifest *incremental.Manifest
	label    []byte
}

// close releases the chain's files and its parents' locks.
func (c *chain) close() {
	for _, m := range c.members {
		for _, f := range m.archives {
			f.Close()
		}
	}
	for _, lk := range c.locks {
		lk.Release()
	}
}

// ChainIDs returns the ids of backup b's chain, full backup first,
// following parent_backup_id through the catalog; a full backup's chain is
// itself. A parent that is missing, unreadable, not DONE, of another
// cluster, or a loop, is an error naming it.
func ChainIDs(l catalog.Layout, b *catalog.BackupInfo) ([]*catalog.BackupInfo, error) {
	cat := catalog.Open(l)
	out := []*catalog.BackupInfo{b}
	seen := map[string]bool{b.ID: true}
	for cur := b; cur.ParentBackupID != ""; {
		p, err := parentOf(cat, cur, seen)
		if err != nil {
			return nil, err
		}
		seen[p.ID] = true
		out = append(out, p)
		cur = p
	}
	slices.Reverse(out)
	return out, nil
}

func parentOf(cat *catalog.Catalog, child *catalog.BackupInfo, seen map[string]bool) (*catalog.BackupInfo, error) {
	id := child.ParentBackupID
	if seen[id] {
		return nil, fmt.Errorf("%w: backup %s: parent_backup_id %s loops back into its own chain", ErrBackupNotRestorable, child.ID, id)
	}
	p, err := cat.Get(id)
	if err != nil {
		return nil, fmt.Errorf("%w: backup %s: its parent backup %s cannot be read: %w", ErrBackupNotRestorable, child.ID, id, err)
	}
	if p.Status != catalog.StatusDone && p.Status != catalog.StatusWaitingForWALs {
		return nil, fmt.Errorf("%w: backup %s: its parent backup %s has status %s", ErrBackupNotRestorable, child.ID, id, p.Status)
	}
	if p.SystemID != "" && child.SystemID != "" && p.SystemID != child.SystemID {
		return nil, fmt.Errorf("%w: backup %s (system identifier %s): its parent backup %s is of another cluster (system identifier %s)",
			ErrBackupNotRestorable, child.ID, child.SystemID, id, p.SystemID)
	}
	return p, nil
}

// openChain resolves, locks, opens and plans the chain of the backup being
// restored, before anything is written: a broken chain fails here.
func (r *restorer) openChain() (*chain, error) {
	return openChainOf(r.opts.Layout, r.backup)
}

// openChainOf resolves backup b's chain, takes its parents' locks shared,
// opens every member and plans the restore of b. The caller closes it.
func openChainOf(l catalog.Layout, b *catalog.BackupInfo) (*chain, error) {
	infos, err := ChainIDs(l, b)
	if err != nil {
		return nil, err
	}
	c := &chain{}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	for i, info := range infos {
		if i < len(infos)-1 {
			lk, err := lockBackup(l, info.ID)
			if err != nil {
				return nil, err
			}
			c.locks = append(c.locks, lk)
		}
		m, err := openMember(l, info)
		c.members = append(c.members, m) // closed with the chain even on error
		if err != nil {
			return nil, err
		}
	}
	if err := c.makePlan(); err != nil {
		return nil, fmt.Errorf("%w: backup %s: %w", ErrBackupNotRestorable, b.ID, err)
	}
	ok = true
	return c, nil
}

// ChainLink is one parent of an incremental backup as verify-backup
// reports it: its status and its last verification record, if any.
type ChainLink struct {
	ID           string
	Status       catalog.Status
	Verification catalog.Verification
	Verified     bool // a verification record exists
}

// CheckChain checks that an incremental backup's chain can be restored
// (every parent readable and DONE, manifests and backup_labels intact and
// linked, no path of the backup missing from the chain) without reading the
// data files, and returns the parents, full backup first. A full backup has
// no parents. The error names the broken link.
func CheckChain(l catalog.Layout, b *catalog.BackupInfo) ([]ChainLink, error) {
	if b.ParentBackupID == "" {
		return nil, nil
	}
	c, err := openChainOf(l, b)
	if err != nil {
		return nil, err
	}
	defer c.close()
	cat := catalog.Open(l)
	var out []ChainLink
	for _, m := range c.members[:len(c.members)-1] {
		link := ChainLink{ID: m.info.ID, Status: m.info.Status}
		v, ok, err := cat.Verification(m.info.ID)
		if err == nil && ok {
			link.Verification, link.Verified = v, true
		}
		out = append(out, link)
	}
	return out, nil
}

// makePlan checks that the members' labels and manifests link up and plans
// the restore.
func (c *chain) makePlan() error {
	manifests := make([]*incremental.Manifest, len(c.members))
	labels := make([]incremental.Label, len(c.members))
	for i, m := range c.members {
		l, err := incremental.ParseLabel(m.label, m.info.ID)
		if err != nil {
			return err
		}
		manifests[i], labels[i] = m.manifest, l
	}
	if err := incremental.CheckLabels(manifests, labels); err != nil {
		return err
	}
	p, err := incremental.NewPlan(manifests)
	if err != nil {
		return err
	}
	c.plan = p
	return nil
}

// openMember finds backup b's trees, indexes its tar files and reads its
// manifest and backup_label. Compressed tar backups are refused: their
// members cannot be read at an offset.
func openMember(l catalog.Layout, b *catalog.BackupInfo) (*chainMember, error) {
	trees, err := backupTrees(l, b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBackupNotRestorable, err)
	}
	m := &chainMember{info: b, trees: trees, archives: map[uint32]*os.File{}, index: map[uint32]*incremental.TarIndex{}}
	for _, s := range trees {
		if err := m.indexTree(s); err != nil {
			return m, err
		}
	}
	if err := m.readManifest(); err != nil {
		return m, err
	}
	return m, m.readLabel()
}

func (m *chainMember) indexTree(s source) error {
	if s.tarPath == "" {
		return nil
	}
	if codecFromSuffix(s.tarPath) != "" {
		return fmt.Errorf("%w: backup %s is stored compressed (%s): restoring an incremental chain needs plain or uncompressed tar backups",
			ErrBackupNotRestorable, m.info.ID, filepath.Base(s.tarPath))
	}
	f, err := os.Open(s.tarPath)
	if err != nil {
		return fmt.Errorf("%w: backup %s: %w", ErrBackupNotRestorable, m.info.ID, err)
	}
	m.archives[s.oid] = f
	idx, err := incremental.IndexTar(io.NewSectionReader(f, 0, 1<<62), s.tarPath)
	if err != nil {
		return fmt.Errorf("%w: backup %s: %w", ErrBackupDamaged, m.info.ID, err)
	}
	m.index[s.oid] = idx
	return nil
}

func (m *chainMember) readManifest() error {
	p := manifestPath(m.trees)
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%w: backup %s: its %s is needed to restore an incremental chain: %w", ErrBackupNotRestorable, m.info.ID, ManifestName, err)
	}
	defer f.Close()
	man, err := incremental.ParseManifest(io.LimitReader(f, maxManifestSize), m.info.ID)
	if err != nil {
		return fmt.Errorf("%w: backup %s: %w", ErrBackupDamaged, m.info.ID, err)
	}
	m.manifest = man
	return nil
}

func (m *chainMember) readLabel() error {
	ra, size, closer, err := m.open("backup_label")
	if err != nil {
		return err
	}
	defer closer.Close()
	data, err := readAllLimit(io.NewSectionReader(ra, 0, size), 1<<20)
	if err != nil {
		return fmt.Errorf("%w: backup %s: backup_label: %w", ErrBackupDamaged, m.info.ID, err)
	}
	m.label = data
	return nil
}

// splitKey finds the tree and the path inside it of a manifest path.
func (m *chainMember) splitKey(key string) (source, string, bool) {
	oid := uint32(0)
	rel := key
	if rest, ok := strings.CutPrefix(key, "pg_tblspc/"); ok {
		o, r, _ := strings.Cut(rest, "/")
		n, err := strconv.ParseUint(o, 10, 32)
		if err != nil {
			return source{}, "", false
		}
		oid, rel = uint32(n), r
	}
	for _, s := range m.trees {
		if s.oid == oid {
			return s, rel, true
		}
	}
	return source{}, "", false
}

// open returns the data of the manifest path key and its size.
func (m *chainMember) open(key string) (io.ReaderAt, int64, io.Closer, error) {
	s, rel, ok := m.splitKey(key)
	if !ok {
		return nil, 0, nil, fmt.Errorf("%w: backup %s has no tree for %s", ErrBackupDamaged, m.info.ID, key)
	}
	if s.tarPath != "" {
		sec, ok := m.index[s.oid].Section(m.archives[s.oid], rel)
		if !ok {
			return nil, 0, nil, &DamagedFileError{Backup: m.info.ID, Path: key, Problem: "missing from " + filepath.Base(s.tarPath)}
		}
		return sec, sec.Size(), io.NopCloser(nil), nil
	}
	f, err := os.Open(filepath.Join(s.plainDir, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil, &DamagedFileError{Backup: m.info.ID, Path: key, Problem: "missing from the backup"}
	}
	if err != nil {
		return nil, 0, nil, fmt.Errorf("backup %s: %w", m.info.ID, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, fmt.Errorf("backup %s: %w", m.info.ID, err)
	}
	return f, fi.Size(), f, nil
}

// copyChain restores the newest backup's data directory from the chain:
// its directories, then every path of the plan, in parallel.
func (r *restorer) copyChain(ctx context.Context, c *chain) error {
	if err := r.chainDirs(c.members[len(c.members)-1]); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.opts.Parallel)
	for _, st := range c.plan.Steps {
		if st.Action == incremental.ActionAbsent {
			continue
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			return r.chainStep(gctx, c, st)
		})
	}
	return g.Wait()
}

// chainDirs creates the newest backup's directories (empty ones too, such
// as pg_wal) at their destinations.
func (r *restorer) chainDirs(m *chainMember) error {
	for _, s := range m.trees {
		tree := r.treeFor(s.oid)
		if err := r.sink.dir(tree.dest); err != nil {
			return err
		}
		for _, d := range memberDirs(m, s) {
			dest, _, _, skip := r.target(tree, d)
			if skip {
				continue
			}
			if err := r.sink.dir(dest); err != nil {
				return err
			}
		}
	}
	return nil
}

// memberDirs lists the directories of one tree of a chain member.
func memberDirs(m *chainMember, s source) []string {
	if s.tarPath != "" {
		return m.index[s.oid].Dirs
	}
	var dirs []string
	filepath.WalkDir(s.plainDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != s.plainDir {
			if rel, rerr := filepath.Rel(s.plainDir, p); rerr == nil {
				dirs = append(dirs, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	return dirs
}

// treeFor is the restored tree (with its destination) of a tablespace oid.
func (r *restorer) treeFor(oid uint32) source {
	for _, s := range r.trees {
		if s.oid == oid {
			return s
		}
	}
	return r.trees[0]
}

// stepTarget maps a plan path to its destination like target does for a
// single backup.
func (r *restorer) stepTarget(c *chain, key string) (dest string, intercept, skip bool) {
	s, rel, ok := c.members[len(c.members)-1].splitKey(key)
	if !ok {
		return "", false, true
	}
	dest, _, intercept, skip = r.target(r.treeFor(s.oid), rel)
	return dest, intercept, skip
}

// chainStep produces one path of the restored directory.
func (r *restorer) chainStep(ctx context.Context, c *chain, st incremental.Step) error {
	dest, intercept, skip := r.stepTarget(c, st.Path)
	if skip {
		return nil
	}
	if err := r.sink.dir(filepath.Dir(dest)); err != nil {
		return err
	}
	newest := c.members[len(c.members)-1]
	switch st.Action {
	case incremental.ActionRewriteLabel:
		return r.writeLabel(dest, newest)
	case incremental.ActionCopy:
		return r.chainCopy(dest, st.Path, intercept, newest)
	default:
		return r.reconstruct(ctx, c, st, dest)
	}
}

// writeLabel checks the newest backup's backup_label against its manifest
// and writes it without the INCREMENTAL FROM lines, which would keep
// PostgreSQL from starting on the restored directory.
func (r *restorer) writeLabel(dest string, newest *chainMember) error {
	if err := r.check.data("backup_label", newest.label); err != nil {
		return err
	}
	full := incremental.FullLabel(newest.label)
	if _, err := r.sink.file(dest, int64(len(full)), bytes.NewReader(full), fileSum{}); err != nil {
		return err
	}
	r.files.Add(1)
	r.bytes.Add(int64(len(full)))
	return nil
}

// chainCopy restores a file the newest backup holds whole.
func (r *restorer) chainCopy(dest, key string, intercept bool, newest *chainMember) error {
	ra, size, closer, err := newest.open(key)
	if err != nil {
		return err
	}
	defer closer.Close()
	rd := io.NewSectionReader(ra, 0, size)
	if !intercept {
		return r.writeFile(dest, key, size, rd)
	}
	data, err := readAllLimit(rd, 64<<20)
	if err != nil {
		return fmt.Errorf("backup %s: %s: %w", newest.info.ID, key, err)
	}
	if err := r.check.data(key, data); err != nil {
		return err
	}
	r.mu.Lock()
	r.intercepted[key] = data
	r.mu.Unlock()
	return nil
}

// reconstruct rebuilds one file from the chain straight into its
// destination. The newest INCREMENTAL file is checked against the newest
// manifest as it is read; the older sources' sizes against theirs.
func (r *restorer) reconstruct(ctx context.Context, c *chain, st incremental.Step, dest string) error {
	sources := slices.Clone(st.Sources)
	paths := st.SourcePaths()
	var newestCheck *seqChecker
	for i := range sources {
		m := c.members[st.From+i]
		ra, size, closer, err := m.open(paths[i])
		if err != nil {
			return err
		}
		defer closer.Close()
		if size != sources[i].Size {
			return &DamagedFileError{Backup: m.info.ID, Path: paths[i], Problem: fmt.Sprintf("size %d bytes, backup_manifest says %d", size, sources[i].Size)}
		}
		if st.From+i == len(c.members)-1 {
			sc, err := r.newSeqChecker(paths[i], ra, size)
			if err != nil {
				return err
			}
			newestCheck, ra = sc, sc
		}
		sources[i].R = ra
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	var rebuilt incremental.Result
	go func() {
		var err error
		rebuilt, err = incremental.Reconstruct(ctx, pw, sources, "")
		pw.CloseWithError(err)
		done <- err
	}()
	_, werr := r.sink.file(dest, -1, pr, fileSum{})
	pr.CloseWithError(errors.New("restore of " + dest + " stopped"))
	if err := <-done; err != nil {
		return fmt.Errorf("backup %s: rebuild %s: %w", r.backup.ID, st.Path, err)
	}
	if werr != nil {
		return werr
	}
	r.files.Add(1)
	r.bytes.Add(rebuilt.Size)
	c.rebuilt.Add(1)
	full, err := newestCheck.finish()
	if err == nil && !full {
		c.sizeOnly.Add(1)
	}
	return err
}

// seqChecker hashes the newest INCREMENTAL file as Reconstruct reads it;
// Reconstruct reads each source in increasing offset order, and the newest
// one whole, so the reads chain up and the manifest checksum can be
// checked. Should they not chain up, only the size (already checked) holds.
type seqChecker struct {
	ra   io.ReaderAt
	cr   *checkedReader
	next int64
	gap  bool
}

func (r *restorer) newSeqChecker(key string, ra io.ReaderAt, size int64) (*seqChecker, error) {
	cr, err := r.check.start(key, size, nil)
	if err != nil {
		return nil, err
	}
	return &seqChecker{ra: ra, cr: cr}, nil
}

func (s *seqChecker) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.ra.ReadAt(p, off)
	switch {
	case off == s.next:
		s.next += int64(n)
		if s.cr.h != nil {
			s.cr.h.Write(p[:n])
		}
	case off+int64(n) > s.next:
		s.gap = true
	}
	return n, err
}

// finish compares what was hashed with the manifest when the reads covered
// the file end to end, and says whether they did.
func (s *seqChecker) finish() (bool, error) {
	if s == nil || s.cr.want == nil || s.cr.h == nil {
		return false, nil
	}
	if s.gap || s.next != s.cr.want.size {
		return false, nil
	}
	s.cr.n = s.next
	return true, s.cr.done()
}
