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
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
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
	stateVersion = 1
	// header: magic and version; trailer: CRC-32C of all before it.
	stateHeader  = len(stateMagic) + 4
	stateTrailer = 4
)

// time location kinds, as in checks/walstate.go: restored times must be
// reflect.DeepEqual to freshly parsed ones.
const (
	locZero  = 0
	locLocal = 1 // followed by the local offset at that instant
	locUTC   = 2
	locFixed = 3 // followed by offset and name
)

// stateTrack remembers what the last save or load covered, so that
// SaveState writes only when the caches changed.
type stateTrack struct {
	mu         sync.Mutex // serialises SaveState/LoadState
	backupsVer uint64
	walsVer    uint64
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
	if !dirty {
		return nil
	}

	l := t.s.Layout()
	e := stateEncoder{b: make([]byte, 0, 4096)}
	e.b = append(e.b, stateMagic...)
	e.b = binary.LittleEndian.AppendUint32(e.b, stateVersion)
	e.str(t.s.Name())
	for _, p := range stateLayoutPaths(l) {
		e.str(p)
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
	e.b = binary.LittleEndian.AppendUint32(e.b, crc32.Checksum(e.b, crc32.MakeTable(crc32.Castagnoli)))

	t.state.backupsVer, t.state.walsVer, t.state.gen, t.state.genDirty = bver, wver, gen, false
	path := t.StatePath()
	if err := durable.WriteFile(path, e.b, 0o600); err != nil {
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
	e.b = append(e.b, flags)
	e.fileID(c.metaDir)
	e.fileID(c.baseDir)
	e.uvarint(uint64(max(c.gen, 0)))
	e.uvarint(uint64(len(c.items)))
	for _, it := range c.items {
		e.str(it.id)
		ci, cached := c.files[it.path]
		var f byte
		if it.meta {
			f |= 1
		}
		if cached {
			f |= 2
		}
		e.b = append(e.b, f)
		if !cached {
			continue
		}
		e.fileID(ci.id)
		e.backup(&ci.b)
	}
}

func (c *walCache) encode(e *stateEncoder) error {
	if !c.valid || c.acc == nil {
		e.b = append(e.b, 0)
		return nil
	}
	acc, err := c.acc.MarshalBinary()
	if err != nil {
		return err
	}
	e.b = append(e.b, 1)
	e.uvarint(c.dev)
	e.uvarint(c.ino)
	e.uvarint(uint64(c.offset))
	e.bytes(c.tail)
	e.bytes(acc)
	return nil
}

type stateEncoder struct{ b []byte }

func (e *stateEncoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *stateEncoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }

func (e *stateEncoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *stateEncoder) bytes(p []byte) {
	e.uvarint(uint64(len(p)))
	e.b = append(e.b, p...)
}

func (e *stateEncoder) fileID(id fileID) {
	e.varint(id.size)
	e.varint(id.mtime)
	e.uvarint(id.dev)
	e.uvarint(id.ino)
}

func (e *stateEncoder) time(t time.Time) {
	if t == (time.Time{}) {
		e.b = append(e.b, locZero)
		return
	}
	switch t.Location() {
	case time.Local:
		_, off := t.Zone()
		e.b = append(e.b, locLocal)
		e.varint(int64(off))
	case time.UTC:
		e.b = append(e.b, locUTC)
	default:
		name, off := t.Zone()
		e.b = append(e.b, locFixed)
		e.varint(int64(off))
		e.str(name)
	}
	e.varint(t.Unix())
	e.uvarint(uint64(t.Nanosecond()))
}

func (e *stateEncoder) backup(b *checks.Backup) {
	// ID is the item's; the rest in checks.Backup's field order.
	e.str(b.Status)
	e.time(b.BeginTime)
	e.time(b.EndTime)
	e.varint(b.Size)
	e.str(b.BeginWAL)
	e.str(b.EndWAL)
	e.uvarint(uint64(b.Timeline))
	e.str(b.ParentID)
	e.uvarint(b.WALSegmentSize)
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
	d := stateDecoder{s: string(body[stateHeader:])}
	if name := d.str(); d.err == nil && name != l.Server {
		return nil, fmt.Errorf("%w: saved for server %q", ErrBadState, name)
	}
	for _, want := range stateLayoutPaths(l) {
		if got := d.str(); d.err == nil && got != want {
			return nil, fmt.Errorf("%w: saved for catalog path %q, now %q", ErrBadState, got, want)
		}
	}
	st := &decodedState{}
	flags := d.byte()
	if flags&^3 != 0 {
		d.fail("unknown listing flags")
	}
	st.listed, st.quiet = flags&1 != 0, flags&2 != 0
	st.metaDir, st.baseDir = d.fileID(), d.fileID()
	st.gen = d.int()
	n := d.count(2)
	st.items = make([]backupItem, 0, n)
	st.files = make(map[string]cachedInfo, n)
	cached := make([]cachedInfo, 0, n)
	cachedAt := make([]int, 0, n)
	for range n {
		id := d.str()
		f := d.byte()
		if d.err != nil {
			break
		}
		if f&^3 != 0 {
			d.fail("unknown backup flags")
			break
		}
		if !catalog.IsBackupID(id) {
			d.fail("bad backup id")
			break
		}
		// listBackups sorts by id and lists each id once.
		if k := len(st.items); k > 0 && st.items[k-1].id >= id {
			d.fail("backup ids not sorted")
			break
		}
		st.items = append(st.items, backupItem{id: id, meta: f&1 != 0})
		if f&2 != 0 {
			fid := d.fileID()
			b := d.backup()
			b.ID = id
			cached = append(cached, cachedInfo{id: fid, b: b})
			cachedAt = append(cachedAt, len(st.items)-1)
		}
	}
	if d.err == nil {
		backupInfoPaths(l, st.items)
		for i, ci := range cached {
			st.files[st.items[cachedAt[i]].path] = ci
		}
	}

	switch d.byte() {
	case 0:
	case 1:
		st.walValid = true
		st.dev, st.ino = d.uvarint(), d.uvarint()
		off := d.uvarint()
		tail, acc := d.bytes(), d.bytes()
		if d.err != nil {
			break
		}
		// readFrom leaves the last whole line consumed, newline
		// included, ending at the offset.
		if off > math.MaxInt64 || uint64(len(tail)) > off || (off > 0) != (len(tail) > 0) ||
			(len(tail) > 0 && tail[len(tail)-1] != '\n') || strings.IndexByte(tail[:max(len(tail)-1, 0)], '\n') >= 0 {
			d.fail("bad xlog.db position")
			break
		}
		st.offset, st.tail = int64(off), []byte(tail)
		st.acc = &checks.WALAccumulator{}
		if err := st.acc.UnmarshalBinary([]byte(acc)); err != nil {
			d.err = fmt.Errorf("%w: %w", ErrBadState, err)
		}
	default:
		d.fail("bad xlog.db flag")
	}
	if d.err == nil && d.left() != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
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

// stateDecoder reads the payload; the first error sticks and later reads
// return zero values, so callers check once.
type stateDecoder struct {
	s   string
	pos int // reading by index: reslicing s would cost a GC write barrier per field
	err error
}

func (d *stateDecoder) left() int { return len(d.s) - d.pos }

func (d *stateDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrBadState, what)
	}
}

func (d *stateDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.pos >= len(d.s) {
		d.fail("truncated")
		return 0
	}
	c := d.s[d.pos]
	d.pos++
	return c
}

// uvarint and varint are binary.Uvarint/Varint on a string (converting
// would copy).
func (d *stateDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var x uint64
	var s uint
	for i := 0; d.pos+i < len(d.s) && i < binary.MaxVarintLen64; i++ {
		c := d.s[d.pos+i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			d.pos += i + 1
			return x | uint64(c)<<s
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	d.fail("truncated or bad number")
	return 0
}

func (d *stateDecoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *stateDecoder) int() int {
	v := d.uvarint()
	if v > math.MaxInt {
		d.fail("number out of range")
		return 0
	}
	return int(v)
}

// count reads a number of elements each taking at least min bytes, and
// refuses counts the remaining data cannot hold before anything is
// allocated for them.
func (d *stateDecoder) count(min int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(d.left()/min) {
		d.fail("count exceeds data")
		return 0
	}
	return int(v)
}

func (d *stateDecoder) str() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	s := d.s[d.pos : d.pos+n]
	d.pos += n
	return s
}

func (d *stateDecoder) bytes() string { return d.str() }

func (d *stateDecoder) fileID() fileID {
	return fileID{size: d.varint(), mtime: d.varint(), dev: d.uvarint(), ino: d.uvarint()}
}

func (d *stateDecoder) time() time.Time {
	kind := d.byte()
	var loc *time.Location
	var localOff int64
	switch kind {
	case locZero:
		return time.Time{}
	case locLocal:
		loc = time.Local
		localOff = d.varint()
	case locUTC:
		loc = time.UTC
	case locFixed:
		off := d.varint()
		name := d.str()
		if d.err == nil && (off < -24*3600 || off > 24*3600) {
			d.fail("bad zone offset")
		}
		if d.err != nil {
			return time.Time{}
		}
		loc = time.FixedZone(name, int(off))
	default:
		d.fail("bad time kind")
		return time.Time{}
	}
	sec, nsec := d.varint(), d.uvarint()
	if d.err == nil && nsec >= 1e9 {
		d.fail("bad nanoseconds")
	}
	if d.err != nil {
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if loc != time.Local {
		return t.In(loc)
	}
	// A backup.info time without offset is read in the local zone: if
	// that zone changed since the save, a fresh parse would give another
	// instant, so the saved one is no longer the answer.
	if _, off := t.Zone(); int64(off) != localOff {
		d.fail("local time zone changed since the save")
		return time.Time{}
	}
	return t
}

func (d *stateDecoder) backup() checks.Backup {
	b := checks.Backup{Status: d.str()}
	b.BeginTime, b.EndTime = d.time(), d.time()
	b.Size = d.varint()
	b.BeginWAL, b.EndWAL = d.str(), d.str()
	tli := d.uvarint()
	if tli > math.MaxUint32 {
		d.fail("timeline out of range")
	}
	b.Timeline = uint32(tli)
	b.ParentID = d.str()
	b.WALSegmentSize = d.uvarint()
	return b
}
