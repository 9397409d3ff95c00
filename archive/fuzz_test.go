package archive

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/wal"
)

// FuzzParseSums: the put-wal checksum parser never panics, and whatever
// it accepts has digests of the right length and names without newlines.
func FuzzParseSums(f *testing.F) {
	f.Add("SHA256SUMS", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 *000000010000000000000001\n")
	f.Add("MD5SUMS", "d41d8cd98f00b204e9800998ecf8427e  ./000000010000000000000001\r\n\n")
	f.Add("SHA256SUMS", "zz *x\n")
	f.Fuzz(func(t *testing.T, member, data string) {
		if member != MD5SumsName {
			member = SHA256SumsName
		}
		sums, err := parseSums(member, []byte(data))
		if err != nil {
			return
		}
		want := 32
		if member == MD5SumsName {
			want = 16
		}
		for name, sum := range sums {
			if len(sum) != want || strings.ContainsAny(name, "\n") {
				t.Fatalf("accepted %q -> %x", name, sum)
			}
		}
	})
}

// FuzzPutWAL: arbitrary put-wal streams never panic and never leave files
// behind when rejected.
func FuzzPutWAL(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 1024))
	f.Fuzz(func(t *testing.T, stream []byte) {
		dir := t.TempDir()
		_, err := putWAL(context.Background(), dir, dir+"/errors", 0, time.Unix(0, 0), bytes.NewReader(stream))
		if err != nil {
			if left := listDir(t, dir); len(left) != 0 {
				t.Fatalf("rejected stream left %v", left)
			}
		}
	})
}

// FuzzSniffDecompressor: arbitrary (possibly truncated or corrupt)
// compressed input yields an error, never a panic.
func FuzzSniffDecompressor(f *testing.F) {
	for _, magic := range []string{"\xff\x06\x00\x00sNaPpY", "\xfd7zXZ\x00", "\x28\xb5\x2f\xfd", "\x04\x22\x4d\x18", "BZh", "\x1f\x8b"} {
		f.Add(append([]byte(magic), 1, 2, 3, 4, 5, 6, 7, 8))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _, err := SniffDecompressor(bytes.NewReader(data))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<20))
		r.Close()
	})
}

// FuzzCheckWAL: archive_command's strict check never panics, and whatever
// it accepts as a segment is exactly as long as its header says.
func FuzzCheckWAL(f *testing.F) {
	name := segName(1, 2, mib)
	good := segment(name, mib, testSysID, 1)
	f.Add(name, good[:64])
	f.Add(name+".partial", good[:4096])
	f.Add("00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"))
	f.Add(name, []byte{})
	f.Fuzz(func(t *testing.T, file string, head []byte) {
		n, err := wal.ParseName(file)
		if err != nil {
			return
		}
		data := head
		if len(head) >= wal.LongPageHeaderSize {
			// Pad to the header's own segment size (bounded) so that a
			// header the fuzzer found can pass the size check too.
			if h, err := wal.ParsePageHeader(head); err == nil && h.Long && h.SegSize <= 4*mib && int(h.SegSize) > len(head) {
				data = append(bytes.Clone(head), make([]byte, int(h.SegSize)-len(head))...)
			}
		}
		if CheckWAL(bytes.NewReader(data), n, testSysID) != nil || n.Kind != wal.KindSegment {
			return
		}
		h, err := wal.ParsePageHeader(data)
		if err != nil || int(h.SegSize) != len(data) || h.SystemID != testSysID {
			t.Fatalf("accepted %s of %d bytes with header %+v (%v)", file, len(data), h, err)
		}
	})
}

// FuzzOwnedTempPID: the temp-name parser never panics and only accepts
// hidden names with a positive PID.
func FuzzOwnedTempPID(f *testing.F) {
	f.Add(".000000010000000000000001.put.tmp-1234-5678")
	f.Add(".RECOVERYXLOG.tmp-1-2")
	f.Add("000000010000000000000001.tmp-1-2")
	f.Add(".x.tmp--1-2")
	f.Fuzz(func(t *testing.T, name string) {
		pid, ok := ownedTempPID(name)
		if ok && (pid <= 0 || !strings.HasPrefix(name, ".") || !strings.Contains(name, ownedMarker)) {
			t.Fatalf("accepted %q with pid %d", name, pid)
		}
	})
}
