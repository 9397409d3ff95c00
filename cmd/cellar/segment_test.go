package main

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/cellar-backup/cellar/wal"
)

// testSegment synthesizes a WAL segment that passes archive_command's
// strict checks: a long page header naming the segment (magic, timeline,
// page address, sysID, segSize), short headers on the following pages,
// random record bytes (seed varies them).
func testSegment(t *testing.T, name string, segSize, sysID, seed uint64) []byte {
	t.Helper()
	n, err := wal.ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, segSize)
	r := rand.New(rand.NewPCG(seed, uint64(n.Seg)))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	start := uint64(n.StartLSN(segSize))
	le := binary.LittleEndian
	for off := uint64(0); off < segSize; off += 8192 {
		p := b[off:]
		le.PutUint16(p[0:], 0xD110)
		le.PutUint16(p[2:], 0)
		le.PutUint32(p[4:], n.TLI)
		le.PutUint64(p[8:], start+off)
		if off == 0 {
			le.PutUint16(p[2:], wal.XLPLongHeader)
			le.PutUint64(p[24:], sysID)
			le.PutUint32(p[32:], uint32(segSize))
			le.PutUint32(p[36:], 8192)
		}
	}
	return b
}

// writeSegment writes testSegment to path and returns its bytes.
func writeSegment(t *testing.T, path, name string, segSize, sysID, seed uint64) []byte {
	t.Helper()
	b := testSegment(t, name, segSize, sysID, seed)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}
