package passive

import (
	"bytes"
	"io"
	"os"

	"github.com/cellar-backup/cellar/catalog"
)

// Lag measures how far the passive trails the primary, from primary.info
// (the last sync-info answer) against sync-wals.info: segments is the
// number of WAL files primary.info lists beyond the passive's last synced
// WAL; seconds is the age difference between the newest of those and the
// passive's newest synchronised WAL (or the oldest pending one when the
// passive has none). Both are 0 when in step. No primary.info yet is an
// error matching fs.ErrNotExist.
func Lag(layout catalog.Layout) (seconds float64, segments int64, err error) {
	info, err := LoadPrimaryInfo(layout)
	if err != nil {
		return 0, 0, err
	}
	state, err := LoadSyncWALsInfo(layout)
	if err != nil {
		return 0, 0, err
	}
	var pending []catalog.WALInfo
	for _, w := range info.WALs {
		if state.LastWAL == "" || w.Name > state.LastWAL {
			pending = append(pending, w)
		}
	}
	if len(pending) == 0 {
		return 0, 0, nil
	}
	newest := pending[len(pending)-1].Time
	base := pending[0].Time
	if local, ok := lastLocalWAL(layout); ok {
		base = local.Time
	}
	for _, w := range pending {
		if isSegmentLike(w.Name) {
			segments++
		}
	}
	return max(0, newest-base), segments, nil
}

// lastLocalWAL is the last complete line of the local xlog.db. It reads
// the file's tail without the xlog.db lock: the exporter must never wait
// on (or, through a rebuild, write) the catalog, and appends only ever add
// whole lines at the end.
func lastLocalWAL(layout catalog.Layout) (catalog.WALInfo, bool) {
	f, err := os.Open(layout.XLogDBPath())
	if err != nil {
		return catalog.WALInfo{}, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return catalog.WALInfo{}, false
	}
	const tail = 4096
	start := max(0, fi.Size()-tail)
	buf := make([]byte, fi.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return catalog.WALInfo{}, false
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i]
	} else {
		return catalog.WALInfo{}, false
	}
	line := buf[bytes.LastIndexByte(buf, '\n')+1:]
	w, err := catalog.ParseXLogLine(string(line))
	return w, err == nil
}
