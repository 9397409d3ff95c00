package stream

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cellar-backup/cellar/internal/durable"
	"github.com/cellar-backup/cellar/wal"
)

// newestFile is the newest segment or .partial in streaming/.
type newestFile struct {
	Name wal.Name // KindSegment or KindPartial
	Size int64
}

// findNewest returns the newest segment or .partial in dir, ordered like
// pg_receivewal's FindStreamingStart: highest segment number, then highest
// timeline; a complete segment of the wrong size is ignored (it cannot be
// trusted as "complete"), a .partial counts whatever its size. ok is false
// when there is none.
func findNewest(dir string, segSize uint64) (newestFile, bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return newestFile{}, false, fmt.Errorf("read streaming directory %s: %w", dir, err)
	}
	var best newestFile
	var bestNo uint64
	found := false
	for _, e := range entries {
		n, err := wal.ParseName(e.Name())
		if err != nil || (n.Kind != wal.KindSegment && n.Kind != wal.KindPartial) {
			continue
		}
		if n.ValidateFor(segSize) != nil || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // moved away by archive-wal meanwhile
			}
			return newestFile{}, false, fmt.Errorf("stat %s: %w", filepath.Join(dir, e.Name()), err)
		}
		if n.Kind == wal.KindSegment && uint64(info.Size()) != segSize {
			continue
		}
		no := n.SegNo(segSize)
		better := !found || no > bestNo || (no == bestNo && n.TLI > best.Name.TLI) ||
			// Same segment and timeline as both a segment and a partial:
			// the complete one wins (the partial is a leftover).
			(no == bestNo && n.TLI == best.Name.TLI && n.Kind == wal.KindSegment)
		if better {
			best, bestNo, found = newestFile{Name: n, Size: info.Size()}, no, true
		}
	}
	return best, found, nil
}

// fixBadPartial applies Barman's start rule: the newest .partial must be
// empty or exactly one segment long (what pg_receivewal creates); any other
// size means a torn write of an unknown writer, so it is truncated to 0 and
// streamed again from its segment start. It reports whether it truncated.
func fixBadPartial(dir string, segSize uint64) (bool, error) {
	nf, ok, err := findNewest(dir, segSize)
	if err != nil || !ok || nf.Name.Kind != wal.KindPartial {
		return false, err
	}
	if nf.Size == 0 || uint64(nf.Size) == segSize {
		return false, nil
	}
	p := filepath.Join(dir, nf.Name.String())
	if err := os.Truncate(p, 0); err != nil {
		return false, fmt.Errorf("truncate bad-size partial %s: %w", p, err)
	}
	if err := durable.SyncFile(p); err != nil {
		return false, fmt.Errorf("sync %s: %w", p, err)
	}
	return true, nil
}

// segmentFile is the open <segment>.partial being streamed into.
type segmentFile struct {
	dir     string
	name    wal.Name // plain segment name
	segSize uint64
	f       *os.File
	synced  uint64 // bytes from the segment start known to be fsynced
	written uint64 // bytes from the segment start written (end of data)
}

// openSegment opens (creating if needed) dir/<name>.partial, extended to
// the full segment size like pg_receivewal's preallocation, so that a
// crashed receiver always leaves a partial of size 0 or segSize. The
// extension is sparse: no zeros are written.
func openSegment(dir string, name wal.Name, segSize uint64) (*segmentFile, error) {
	p := filepath.Join(dir, name.Partial().String())
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", p, err)
	}
	if uint64(info.Size()) != segSize {
		if err := f.Truncate(int64(segSize)); err != nil {
			f.Close()
			return nil, fmt.Errorf("extend %s to %d bytes: %w", p, segSize, err)
		}
		// The new name must survive a crash before any flush position
		// inside it is reported.
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync %s: %w", p, err)
		}
		if err := durable.SyncDir(dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync %s: %w", dir, err)
		}
	}
	return &segmentFile{dir: dir, name: name, segSize: segSize, f: f}, nil
}

func (s *segmentFile) path() string { return filepath.Join(s.dir, s.name.Partial().String()) }

// writeAt writes data at offset off inside the segment.
func (s *segmentFile) writeAt(data []byte, off uint64) error {
	if off+uint64(len(data)) > s.segSize {
		return fmt.Errorf("write %s: %d bytes at offset %d overflow the segment", s.path(), len(data), off)
	}
	if _, err := s.f.WriteAt(data, int64(off)); err != nil {
		return fmt.Errorf("write %s: %w", s.path(), err)
	}
	s.written = off + uint64(len(data))
	return nil
}

// sync fsyncs the file if anything was written since the last sync.
func (s *segmentFile) sync() error {
	if s.synced == s.written {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", s.path(), err)
	}
	s.synced = s.written
	return nil
}

// complete fsyncs the full segment, closes it and renames it to its final
// name, fsyncing the directory.
func (s *segmentFile) complete() error {
	if err := s.sync(); err != nil {
		return err
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.path(), err)
	}
	s.f = nil
	final := filepath.Join(s.dir, s.name.String())
	if err := os.Rename(s.path(), final); err != nil {
		return fmt.Errorf("rename %s to %s: %w", s.path(), final, err)
	}
	if err := durable.SyncDir(s.dir); err != nil {
		return fmt.Errorf("sync %s after completing %s: %w", s.dir, s.name, err)
	}
	return nil
}

// close fsyncs and closes the file, keeping its .partial name (stop, or the
// end of a timeline in the middle of a segment).
func (s *segmentFile) close() error {
	if s == nil || s.f == nil {
		return nil
	}
	err := s.sync()
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", s.path(), cerr)
	}
	s.f = nil
	return err
}

// writeTmpRename writes path durably through path+".tmp". Barman's
// archive-wal skips *.tmp in streaming/ but would move any other stray name
// (such as renameio's dot-prefixed temp files) to errors/.
func writeTmpRename(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return werr
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return durable.SyncDir(filepath.Dir(path))
}
