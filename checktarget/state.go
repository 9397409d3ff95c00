package checktarget

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/internal/binenc"
	"github.com/cellar-backup/cellar/internal/durable"
)

// The caches of cache.go make re-evaluations cheap, but a restarted
// exporter would start cold: 100k xlog.db lines and 1000 backup.info
// files per server, over a second for 20 servers. SaveState persists
// both caches next to the catalog and LoadState primes a new Target with
// them. Nothing in the file is trusted beyond what the caches already
// trust in memory: every entry is still checked against the catalog by
// the same identity tests (file size, mtime, device and inode; xlog.db
// inode, size and tail bytes), so a stale state file costs re-reads,
// never a wrong answer.

// StateFileName is the state file's name in the server's backup
// directory. It must not live in base/, meta/ or wals/: writing it would
// change the identities of the directories the cache relies on.
const StateFileName = ".cellar-probe-state"

// ErrBadState is matched (errors.Is) by LoadState's errors for a state
// file that is damaged, of another format version, or of another server
// or catalog layout.
var ErrBadState = errors.New("unusable probe state file")

const (
	stateMagic = "CELLARPS"
	// stateVersion changes with the encoding, or with the fields of
	// checks.Backup or the caches (a test counts checks.Backup's).
	stateVersion = 2
	// header: magic and version; trailer: CRC-32C of all before it.
	stateHeader  = len(stateMagic) + 4
	stateTrailer = 4
)

// stateTrack remembers what the last save or load covered, so that
// SaveState writes only when the caches changed.
type stateTrack struct {
	mu         sync.Mutex // serialises SaveState/LoadState
	backupsVer uint64
	walsVer    uint64
	verifyVer  uint64
	gen        int
	// genDirty: save the restat position at the next save even when
	// nothing else changed, once after a load (a process restarted
	// after every evaluation would otherwise stat the same slice each
	// time) and then once per round of slices.
	genDirty bool
}

// StatePath is where SaveState writes and LoadState reads.
func (t *Target) StatePath() string {
	return filepath.Join(t.s.Layout().BackupDir, StateFileName)
}

// LoadState primes the caches with the state a previous process saved,
// so that the next Backups and WALSummary calls cost what they would
// have cost in that process. A missing file is a cold start (nil). A
// file that cannot be used (damaged, other version, other server or
// layout) is an error wrapping ErrBadState and naming the file; the
// caches then stay as they were. Call it before the first evaluation;
// later calls replace the caches, which stays correct but wastes work.
func (t *Target) LoadState() error {
	t.state.mu.Lock()
	defer t.state.mu.Unlock()
	path := t.StatePath()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server %s: probe state %s: %w", t.s.Name(), path, err)
	}
	st, err := decodeState(data, t.s.Layout())
	if err != nil {
		return fmt.Errorf("server %s: probe state %s: %w", t.s.Name(), path, err)
	}

	b := &t.backups
	b.mu.Lock()
	b.files, b.items = st.files, st.items
	b.listed, b.quiet, b.metaDir, b.baseDir, b.gen = st.listed, st.quiet, st.metaDir, st.baseDir, st.gen
	b.ver++
	t.state.backupsVer, t.state.gen = b.ver, b.gen
	b.mu.Unlock()

	w := &t.wals
	w.mu.Lock()
	w.valid, w.dev, w.ino, w.offset, w.tail, w.acc = st.walValid, st.dev, st.ino, st.offset, st.tail, st.acc
	w.ver++
	t.state.walsVer = w.ver
	w.mu.Unlock()

	v := &t.verify
	v.mu.Lock()
	v.ids, v.recs, v.shared = st.verifyIDs, st.verifyRecs, false
	v.ver++
	t.state.verifyVer = v.ver
	v.mu.Unlock()
	t.state.genDirty = true
	return nil
}

// SaveState writes the caches to StatePath durably (0600), if they
// changed since the last save or load: calling it after every
// evaluation is cheap. The caches are encoded under their locks and
// written without them, so evaluations are not held up by the disk.
//
// A failed write is returned (on a read-only catalog, EACCES or EROFS:
// callers log it at debug level) and not retried until the caches
// change again: the state is only a cache.
func (t *Target) SaveState() error {
	t.state.mu.Lock()
	defer t.state.mu.Unlock()
	b, w := &t.backups, &t.wals
	b.mu.Lock()
	dirty := b.ver != t.state.backupsVer || (b.gen != t.state.gen && (t.state.genDirty || absDiff(b.gen, t.state.gen) >= restatSlices))
	b.mu.Unlock()
	w.mu.Lock()
	dirty = dirty || w.ver != t.state.walsVer
	w.mu.Unlock()
	v := &t.verify
	v.mu.Lock()
	dirty = dirty || v.ver != t.state.verifyVer
	v.mu.Unlock()
	if !dirty {
		return nil
	}

	l := t.s.Layout()
	e := stateEncoder{binenc.Encoder{B: make([]byte, 0, 4096)}}
	e.B = append(e.B, stateMagic...)
	e.B = binary.LittleEndian.AppendUint32(e.B, stateVersion)
	e.Str(t.s.Name())
	for _, p := range stateLayoutPaths(l) {
		e.Str(p)
	}
	b.mu.Lock()
	bver, gen := b.ver, b.gen
	b.encode(&e)
	b.mu.Unlock()
	w.mu.Lock()
	wver := w.ver
	err := w.encode(&e)
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("server %s: probe state: %w", t.s.Name(), err)
	}
	v.mu.Lock()
	vver := v.ver
	v.encode(&e)
	v.mu.Unlock()
	e.B = binary.LittleEndian.AppendUint32(e.B, crc32.Checksum(e.B, crc32.MakeTable(crc32.Castagnoli)))

	t.state.backupsVer, t.state.walsVer, t.state.verifyVer, t.state.gen, t.state.genDirty = bver, wver, vver, gen, false
	path := t.StatePath()
	if err := durable.WriteFile(path, e.B, 0o600); err != nil {
		return fmt.Errorf("server %s: probe state: %w", t.s.Name(), err)
	}
	return nil
}

func absDiff(a, b int) int {
	if a < b {
		return b - a
	}
	return a - b
}

// stateLayoutPaths are the catalog paths a state belongs to: a state
// saved for another layout (moved or reconfigured server) is refused.
func stateLayoutPaths(l catalog.Layout) []string {
	return []string{l.BackupDir, l.MetaDir, l.BaseDir, l.XLogDBPath()}
}

func (c *backupCache) encode(e *stateEncoder) {
	var flags byte
	if c.listed {
		flags |= 1
	}
	if c.quiet {
		flags |= 2
	}
	e.Byte(flags)
	e.fileID(c.metaDir)
	e.fileID(c.baseDir)
	e.Uvarint(uint64(max(c.gen, 0)))
	e.Uvarint(uint64(len(c.items)))
	for _, it := range c.items {
		e.Str(it.id)
		ci, cached := c.files[it.path]
		var f byte
		if it.meta {
			f |= 1
		}
		if cached {
			f |= 2
		}
		if it.deleting {
			f |= 4
		}
		e.Byte(f)
		if !cached {
			continue
		}
		e.fileID(ci.id)
		e.backup(&ci.b)
	}
}

func (c *walCache) encode(e *stateEncoder) error {
	if !c.valid || c.acc == nil {
		e.Byte(0)
		return nil
	}
	acc, err := c.acc.MarshalBinary()
	if err != nil {
		return err
	}
	e.Byte(1)
	e.Uvarint(c.dev)
	e.Uvarint(c.ino)
	e.Uvarint(uint64(c.offset))
	e.Bytes(c.tail)
	e.Bytes(acc)
	return nil
}

// stateEncoder adds the cache types to the shared encoding.
type stateEncoder struct{ binenc.Encoder }

func (e *stateEncoder) fileID(id fileID) {
	e.Varint(id.size)
	e.Varint(id.mtime)
	e.Uvarint(id.dev)
	e.Uvarint(id.ino)
}

func (e *stateEncoder) backup(b *checks.Backup) {
	// ID is the item's; the rest in checks.Backup's field order.
	e.Str(b.Status)
	e.Time(b.BeginTime)
	e.Time(b.EndTime)
	e.Varint(b.Size)
	e.Str(b.BeginWAL)
	e.Str(b.EndWAL)
	e.Uvarint(uint64(b.Timeline))
	e.Str(b.ParentID)
	e.Uvarint(b.WALSegmentSize)
}

// decodedState is a validated state file, in the caches' shapes.
type decodedState struct {
	listed, quiet    bool
	metaDir, baseDir fileID
	gen              int
	items            []backupItem
	files            map[string]cachedInfo

	walValid bool
	dev, ino uint64
	offset   int64
	tail     []byte
	acc      *checks.WALAccumulator

	verifyIDs  map[string]fileID
	verifyRecs map[string]catalog.Verification
}

// decodeState checks and decodes a state file for layout l. Strings are
// cut from one copy of the file, so decoding 1000 backups costs few
// allocations.
func decodeState(data []byte, l catalog.Layout) (*decodedState, error) {
	if len(data) < stateHeader+stateTrailer || string(data[:len(stateMagic)]) != stateMagic {
		return nil, fmt.Errorf("%w: not a probe state file", ErrBadState)
	}
	if v := binary.LittleEndian.Uint32(data[len(stateMagic):]); v != stateVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrBadState, v, stateVersion)
	}
	body := data[:len(data)-stateTrailer]
	if crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)) != binary.LittleEndian.Uint32(data[len(body):]) {
		return nil, fmt.Errorf("%w: checksum mismatch (truncated or damaged)", ErrBadState)
	}
	d := stateDecoder{binenc.NewDecoder(string(body[stateHeader:]))}
	if name := d.Str(); d.Err() == nil && name != l.Server {
		return nil, fmt.Errorf("%w: saved for server %q", ErrBadState, name)
	}
	for _, want := range stateLayoutPaths(l) {
		if got := d.Str(); d.Err() == nil && got != want {
			return nil, fmt.Errorf("%w: saved for catalog path %q, now %q", ErrBadState, got, want)
		}
	}
	st := &decodedState{}
	var accErr error
	flags := d.Byte()
	if flags&^3 != 0 {
		d.Fail("unknown listing flags")
	}
	st.listed, st.quiet = flags&1 != 0, flags&2 != 0
	st.metaDir, st.baseDir = d.fileID(), d.fileID()
	st.gen = d.Int()
	n := d.Count(2)
	st.items = make([]backupItem, 0, n)
	st.files = make(map[string]cachedInfo, n)
	cached := make([]cachedInfo, 0, n)
	cachedAt := make([]int, 0, n)
	for range n {
		id := d.Str()
		f := d.Byte()
		if d.Err() != nil {
			break
		}
		if f&^7 != 0 {
			d.Fail("unknown backup flags")
			break
		}
		if !catalog.IsBackupID(id) {
			d.Fail("bad backup id")
			break
		}
		// listBackups sorts by id and lists each id once.
		if k := len(st.items); k > 0 && st.items[k-1].id >= id {
			d.Fail("backup ids not sorted")
			break
		}
		st.items = append(st.items, backupItem{id: id, meta: f&1 != 0, deleting: f&4 != 0})
		if f&2 != 0 {
			fid := d.fileID()
			b := d.backup()
			b.ID = id
			cached = append(cached, cachedInfo{id: fid, b: b})
			cachedAt = append(cachedAt, len(st.items)-1)
		}
	}
	if d.Err() == nil {
		backupInfoPaths(l, st.items)
		for i, ci := range cached {
			st.files[st.items[cachedAt[i]].path] = ci
		}
	}

	switch d.Byte() {
	case 0:
	case 1:
		st.walValid = true
		st.dev, st.ino = d.Uvarint(), d.Uvarint()
		off := d.Uvarint()
		tail, acc := d.Str(), d.Str()
		if d.Err() != nil {
			break
		}
		// readFrom leaves the last whole line consumed, newline
		// included, ending at the offset.
		if off > math.MaxInt64 || uint64(len(tail)) > off || (off > 0) != (len(tail) > 0) ||
			(len(tail) > 0 && tail[len(tail)-1] != '\n') || strings.IndexByte(tail[:max(len(tail)-1, 0)], '\n') >= 0 {
			d.Fail("bad xlog.db position")
			break
		}
		st.offset, st.tail = int64(off), []byte(tail)
		st.acc = &checks.WALAccumulator{}
		if err := st.acc.UnmarshalBinary([]byte(acc)); err != nil {
			accErr = err
			d.Fail("bad WAL summary")
		}
	default:
		d.Fail("bad xlog.db flag")
	}
	st.verifyIDs, st.verifyRecs = decodeVerifications(&d)
	if d.Err() == nil && d.Left() != 0 {
		d.Fail("trailing bytes")
	}
	if accErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadState, accErr)
	}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	return st, nil
}

// backupInfoPaths sets the items' paths as the Layout methods build them
// (listBackups), cut from one string instead of two allocations each.
func backupInfoPaths(l catalog.Layout, items []backupItem) {
	meta, base := l.MetaDir+string(filepath.Separator), l.BaseDir+string(filepath.Separator)
	metaSuffix, baseSuffix := "-backup.info", string(filepath.Separator)+"backup.info"
	// Concatenation equals filepath.Join for a clean directory not
	// ending in a separator and an id (no separators or dots).
	concat := filepath.Clean(l.MetaDir) == l.MetaDir && filepath.Clean(l.BaseDir) == l.BaseDir &&
		!strings.HasSuffix(l.MetaDir, string(filepath.Separator)) && !strings.HasSuffix(l.BaseDir, string(filepath.Separator))
	if !concat {
		for i := range items {
			if items[i].meta {
				items[i].path = l.MetaBackupInfoPath(items[i].id)
			} else {
				items[i].path = l.LegacyBackupInfoPath(items[i].id)
			}
		}
		return
	}
	var sb strings.Builder
	n := 0
	for _, it := range items {
		n += max(len(meta), len(base)) + len(it.id) + len(metaSuffix) + len(baseSuffix)
	}
	sb.Grow(n)
	ends := make([]int, len(items))
	for i, it := range items {
		if it.meta {
			sb.WriteString(meta)
			sb.WriteString(it.id)
			sb.WriteString(metaSuffix)
		} else {
			sb.WriteString(base)
			sb.WriteString(it.id)
			sb.WriteString(baseSuffix)
		}
		ends[i] = sb.Len()
	}
	all := sb.String()
	start := 0
	for i := range items {
		items[i].path = all[start:ends[i]]
		start = ends[i]
	}
}

// stateDecoder adds the cache types to the shared decoding.
type stateDecoder struct{ *binenc.Decoder }

func (d *stateDecoder) fileID() fileID {
	return fileID{size: d.Varint(), mtime: d.Varint(), dev: d.Uvarint(), ino: d.Uvarint()}
}

func (d *stateDecoder) backup() checks.Backup {
	b := checks.Backup{Status: d.Str()}
	b.BeginTime, b.EndTime = d.Time(), d.Time()
	b.Size = d.Varint()
	b.BeginWAL, b.EndWAL = d.Str(), d.Str()
	tli := d.Uvarint()
	if tli > math.MaxUint32 {
		d.Fail("timeline out of range")
	}
	b.Timeline = uint32(tli)
	b.ParentID = d.Str()
	b.WALSegmentSize = d.Uvarint()
	return b
}
