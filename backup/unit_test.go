package backup

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFrame(t *testing.T) {
	t.Parallel()
	prog := binary.BigEndian.AppendUint64([]byte{'p'}, 123456789012)
	tests := []struct {
		name string
		in   []byte
		want Frame
		err  bool
	}{
		{"base archive", []byte("nbase.tar\x00\x00"), Frame{Type: 'n', Name: "base.tar"}, false},
		{"tablespace archive", []byte("n16384.tar\x00/srv/ts\x00"), Frame{Type: 'n', Name: "16384.tar", Location: "/srv/ts"}, false},
		{"data", []byte("dabc"), Frame{Type: 'd', Data: []byte("abc")}, false},
		{"empty data", []byte("d"), Frame{Type: 'd', Data: []byte{}}, false},
		{"progress", prog, Frame{Type: 'p', Progress: 123456789012}, false},
		{"manifest", []byte("m"), Frame{Type: 'm'}, false},
		{"empty", nil, Frame{}, true},
		{"unknown type", []byte("x"), Frame{}, true},
		{"archive without NUL", []byte("nbase.tar"), Frame{}, true},
		{"archive without location NUL", []byte("nbase.tar\x00/x"), Frame{}, true},
		{"archive trailing bytes", []byte("nbase.tar\x00\x00z"), Frame{}, true},
		{"archive escaping name", []byte("n../x.tar\x00\x00"), Frame{}, true},
		{"archive oid zero", []byte("n0.tar\x00\x00"), Frame{}, true},
		{"archive leading zero oid", []byte("n016384.tar\x00\x00"), Frame{}, true},
		{"short progress", []byte("p\x00\x01"), Frame{}, true},
		{"negative progress", binary.BigEndian.AppendUint64([]byte{'p'}, 1<<63), Frame{}, true},
		{"manifest with payload", []byte("mx"), Frame{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseFrame(tc.in)
			if tc.err {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("ParseFrame(%q) = %+v, %v; want ErrProtocol", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tc.want.Type || got.Name != tc.want.Name || got.Location != tc.want.Location ||
				got.Progress != tc.want.Progress || !bytes.Equal(got.Data, tc.want.Data) {
				t.Fatalf("ParseFrame(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func FuzzBaseBackupFrame(f *testing.F) {
	f.Add([]byte("nbase.tar\x00\x00"))
	f.Add([]byte("n16384.tar\x00/srv/ts\x00"))
	f.Add([]byte("dsome data"))
	f.Add(binary.BigEndian.AppendUint64([]byte{'p'}, 42))
	f.Add([]byte("m"))
	f.Add([]byte("nbase.tar.zst\x00\x00"))
	f.Add([]byte("n16384.tar.lz4\x00/srv/ts\x00"))
	f.Add([]byte("n16384.tar.bz2\x00/srv/ts\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error not ErrProtocol: %v", err)
			}
			return
		}
		switch fr.Type {
		case FrameArchive:
			if !validArchiveName(fr.Name) || strings.ContainsAny(fr.Name, "/\x00") {
				t.Fatalf("accepted archive name %q", fr.Name)
			}
			// Re-encoding gives the input back.
			if re := "n" + fr.Name + "\x00" + fr.Location + "\x00"; re != string(b) {
				t.Fatalf("round trip %q != %q", re, b)
			}
		case FrameData:
			if !bytes.Equal(fr.Data, b[1:]) {
				t.Fatal("data mismatch")
			}
		case FrameProgress:
			if fr.Progress < 0 || len(b) != 9 {
				t.Fatalf("progress %d from %d bytes", fr.Progress, len(b))
			}
		case FrameManifest:
			if len(b) != 1 {
				t.Fatal("manifest frame with payload")
			}
		default:
			t.Fatalf("type %q accepted", fr.Type)
		}
	})
}

func TestCommandSQL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cmd  Command
		want string
		err  bool
	}{
		{"spread", Command{Label: "x"}, "BASE_BACKUP (LABEL 'x', PROGRESS, WAIT false, MANIFEST 'yes', CHECKPOINT 'spread', MANIFEST_CHECKSUMS 'CRC32C')", false},
		{"fast rate map", Command{Label: "it's \\ ok", Fast: true, MaxRateKBps: 1024, TablespaceMap: true, ManifestChecksums: "SHA256"},
			"BASE_BACKUP (LABEL 'it''s \\ ok', PROGRESS, WAIT false, MANIFEST 'yes', CHECKPOINT 'fast', MANIFEST_CHECKSUMS 'SHA256', MAX_RATE 1024, TABLESPACE_MAP)", false},
		{"injection stays quoted", Command{Label: "a'), WAL true, (LABEL 'b"}, "BASE_BACKUP (LABEL 'a''), WAL true, (LABEL ''b', PROGRESS, WAIT false, MANIFEST 'yes', CHECKPOINT 'spread', MANIFEST_CHECKSUMS 'CRC32C')", false},
		{"NUL label", Command{Label: "a\x00b"}, "", true},
		{"long label", Command{Label: strings.Repeat("x", 1024)}, "", true},
		{"rate too low", Command{MaxRateKBps: 31}, "", true},
		{"rate too high", Command{MaxRateKBps: 1048577}, "", true},
		{"bad checksum", Command{ManifestChecksums: "MD5"}, "", true},
		{"server lz4", Command{Label: "x", Compression: "lz4"},
			"BASE_BACKUP (LABEL 'x', PROGRESS, WAIT false, MANIFEST 'yes', CHECKPOINT 'spread', MANIFEST_CHECKSUMS 'CRC32C', COMPRESSION 'lz4')", false},
		{"server zstd workers", Command{Label: "x", Compression: "zstd", CompressionDetail: "level=5,workers=2"},
			"BASE_BACKUP (LABEL 'x', PROGRESS, WAIT false, MANIFEST 'yes', CHECKPOINT 'spread', MANIFEST_CHECKSUMS 'CRC32C', COMPRESSION 'zstd', COMPRESSION_DETAIL 'level=5,workers=2')", false},
		{"unknown server compression", Command{Compression: "bzip2"}, "", true},
		{"detail without compression", Command{CompressionDetail: "level=1"}, "", true},
		{"detail unknown key", Command{Compression: "zstd", CompressionDetail: "workers=2', WAL true"}, "", true},
		{"detail bad level", Command{Compression: "lz4", CompressionDetail: "level=fast"}, "", true},
		{"detail level without value", Command{Compression: "lz4", CompressionDetail: "level"}, "", true},
		{"pg14 spread", Command{Label: "x", ServerVersion: 140023},
			"BASE_BACKUP LABEL 'x' PROGRESS NOWAIT MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'", false},
		{"pg13 fast rate map", Command{Label: "it's", Fast: true, MaxRateKBps: 1024, TablespaceMap: true, ServerVersion: 130023},
			"BASE_BACKUP LABEL 'it''s' PROGRESS NOWAIT MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C' FAST MAX_RATE 1024 TABLESPACE_MAP", false},
		{"pg14 server compression refused", Command{Label: "x", Compression: "lz4", ServerVersion: 140023}, "", true},
		{"pg14 rate too low", Command{MaxRateKBps: 31, ServerVersion: 140023}, "", true},
		{"pg15 new syntax", Command{Label: "x", ServerVersion: 150018},
			"BASE_BACKUP (LABEL 'x', PROGRESS, WAIT false, MANIFEST 'yes', CHECKPOINT 'spread', MANIFEST_CHECKSUMS 'CRC32C')", false},
	}
	for _, tc := range tests {
		got, err := tc.cmd.SQL()
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s: SQL() = %q, %v; want %q (error %v)", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestParseRows(t *testing.T) {
	t.Parallel()
	p, err := parsePositionRow([][]byte{[]byte("0/2000028"), []byte("3")})
	if err != nil || p.LSN != 0x2000028 || p.Timeline != 3 {
		t.Fatalf("position %+v %v", p, err)
	}
	for _, bad := range [][][]byte{{[]byte("x"), []byte("1")}, {[]byte("0/1"), []byte("0")}, {[]byte("0/1"), nil}, {[]byte("0/1")}} {
		if _, err := parsePositionRow(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("parsePositionRow(%q) = %v", bad, err)
		}
	}
	// Sizes beyond int8 (pglogrepl's field) and beyond int32 must parse.
	ts, err := parseTablespaceRow([][]byte{[]byte("16384"), []byte("/srv/ts"), []byte("5000000000")})
	if err != nil || ts.OID != 16384 || ts.Location != "/srv/ts" || ts.Size != 5000000000*1024 {
		t.Fatalf("tablespace %+v %v", ts, err)
	}
	ts, err = parseTablespaceRow([][]byte{nil, nil, nil})
	if err != nil || ts.OID != 0 || ts.Size != -1 {
		t.Fatalf("base tablespace %+v %v", ts, err)
	}
	if _, err := parseTablespaceRow([][]byte{[]byte("x"), nil, nil}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("bad oid accepted: %v", err)
	}
}

// manifestFor builds a backup_manifest the way PostgreSQL does, with a
// correct Manifest-Checksum.
func manifestFor(files []FileSum) []byte {
	return manifestHead("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n", files)
}

// manifestV2For is manifestFor in PostgreSQL 17's version 2 format, which
// names the cluster's system identifier.
func manifestV2For(sysid string, files []FileSum) []byte {
	return manifestHead("{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": "+sysid+",\n", files)
}

func manifestHead(head string, files []FileSum) []byte {
	var b bytes.Buffer
	b.WriteString(head + "\"Files\": [\n")
	for i, f := range files {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{ "Path": %q, "Size": %d, "Last-Modified": "2026-01-01 00:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": %q }`, f.Path, f.Size, f.Checksum)
	}
	b.WriteString("\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/2000100\" }\n],\n")
	sum := sha256.Sum256(b.Bytes())
	fmt.Fprintf(&b, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:]))
	return b.Bytes()
}

func crcHex(data string) string {
	h, _ := newChecksum("CRC32C")
	h.Write([]byte(data))
	return hex.EncodeToString(h.Sum(nil))
}

func TestManifest(t *testing.T) {
	t.Parallel()
	files := []FileSum{{"PG_VERSION", 3, crcHex("15\n")}, {"pg_tblspc/16384/PG_15_1/1", 1, crcHex("x")}}
	data := manifestFor(files)
	m, err := ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(files); err != nil {
		t.Fatalf("Verify of matching files: %v", err)
	}
	tests := []struct {
		name string
		got  []FileSum
	}{
		{"missing", files[:1]},
		{"extra", append(append([]FileSum{}, files...), FileSum{"x", 0, crcHex("")})},
		{"size", []FileSum{{"PG_VERSION", 4, crcHex("15\n")}, files[1]}},
		{"checksum", []FileSum{{"PG_VERSION", 3, crcHex("16\n")}, files[1]}},
	}
	for _, tc := range tests {
		if err := m.Verify(tc.got); !errors.Is(err, ErrManifest) {
			t.Errorf("%s: Verify = %v, want ErrManifest", tc.name, err)
		}
	}
	tampered := bytes.Replace(data, []byte(`"Size": 3`), []byte(`"Size": 4`), 1)
	if _, err := ParseManifest(tampered); !errors.Is(err, ErrManifest) {
		t.Errorf("tampered manifest accepted: %v", err)
	}
	// PostgreSQL's CRC-32C of "123456789" is e3069283, stored as the
	// little-endian bytes of the uint32.
	if got := crcHex("123456789"); got != "839206e3" {
		t.Errorf("crc32c digest %s", got)
	}
}

// Version 2 manifests (PostgreSQL 17+) parse, and their System-Identifier
// must be the server's; version 1 has none to check; unknown versions and a
// version 2 without the identifier are refused.
func TestManifestVersions(t *testing.T) {
	t.Parallel()
	files := []FileSum{{"PG_VERSION", 3, crcHex("17\n")}}
	const sysid = "7580000000000000001" // above 2^53: must not go through float64
	m, err := ParseManifest(manifestV2For(sysid, files))
	if err != nil {
		t.Fatalf("version 2 manifest: %v", err)
	}
	if err := m.Verify(files); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := m.CheckSystemID(sysid); err != nil {
		t.Errorf("CheckSystemID(own id): %v", err)
	}
	if err := m.CheckSystemID("7580000000000000002"); !errors.Is(err, ErrManifest) || !strings.Contains(err.Error(), sysid) {
		t.Errorf("CheckSystemID(other cluster) = %v, want ErrManifest naming %s", err, sysid)
	}
	v1, err := ParseManifest(manifestFor(files))
	if err != nil || v1.CheckSystemID("1") != nil {
		t.Errorf("version 1 manifest: %v / %v", err, v1.CheckSystemID("1"))
	}
	bad := map[string][]byte{
		"no System-Identifier": manifestHead("{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n", files),
		"version 3":            manifestHead("{ \"PostgreSQL-Backup-Manifest-Version\": 3,\n\"System-Identifier\": 1,\n", files),
	}
	for name, data := range bad {
		if _, err := ParseManifest(data); !errors.Is(err, ErrManifest) {
			t.Errorf("%s: ParseManifest = %v, want ErrManifest", name, err)
		}
	}
}

// FuzzParseManifest: any input parses or fails with ErrManifest, never
// panics; a parsed manifest's checks never panic either.
func FuzzParseManifest(f *testing.F) {
	files := []FileSum{{"PG_VERSION", 3, crcHex("17\n")}, {"global/pg_control", 8192, crcHex("x")}}
	f.Add(manifestFor(files))
	f.Add(manifestV2For("7580000000000000001", files))
	f.Add([]byte(`{"PostgreSQL-Backup-Manifest-Version": 2, "System-Identifier": -1}`))
	f.Add([]byte(`{"PostgreSQL-Backup-Manifest-Version": 2, "System-Identifier": 18446744073709551616}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrManifest) {
				t.Fatalf("error without ErrManifest: %v", err)
			}
			return
		}
		_ = m.CheckSystemID("1")
		_ = m.Verify(files)
	})
}

type member struct {
	name, link string
	typ        byte
	data       string
}

func tarOf(t *testing.T, members []member) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Typeflag: m.typ, Linkname: m.link, Mode: 0o600, Size: int64(len(m.data)), ModTime: time.Unix(0, 0)}
		if m.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(m.data))
	}
	tw.Close()
	return b.Bytes()
}

func TestExtractRejectsUnsafeMembers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		members []member
	}{
		{"dotdot", []member{{name: "../evil", typ: tar.TypeReg, data: "x"}}},
		{"nested dotdot", []member{{name: "base/../../evil", typ: tar.TypeReg, data: "x"}}},
		{"absolute", []member{{name: "/etc/evil", typ: tar.TypeReg, data: "x"}}},
		{"symlink outside pg_tblspc", []member{{name: "base/link", typ: tar.TypeSymlink, link: "/etc"}}},
		{"symlink bad oid", []member{{name: "pg_tblspc/abc", typ: tar.TypeSymlink, link: "/etc"}}},
		{"hard link", []member{{name: "a", typ: tar.TypeLink, link: "b"}}},
		{"device", []member{{name: "dev", typ: tar.TypeChar}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			c, err := newCopier(filepath.Join(dir, "b"), CompressionNone, "CRC32C", "")
			if err != nil {
				t.Fatal(err)
			}
			err = c.archive("base.tar", bytes.NewReader(tarOf(t, tc.members)))
			c.sync.wait()
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("archive = %v, want ErrUnsafePath", err)
			}
			if _, err := os.Stat(filepath.Join(dir, "evil")); err == nil {
				t.Fatal("file written outside the backup")
			}
		})
	}
}

func TestExtractPlainAndTablespaceLink(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "b")
	c, err := newCopier(dir, CompressionNone, "CRC32C", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.archive("16384.tar", bytes.NewReader(tarOf(t, []member{{name: "PG_15_1/", typ: tar.TypeDir}, {name: "PG_15_1/5/1", typ: tar.TypeReg, data: "tsdata"}}))); err != nil {
		t.Fatal(err)
	}
	if err := c.archive("base.tar", bytes.NewReader(tarOf(t, []member{
		{name: "backup_label", typ: tar.TypeReg, data: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"},
		{name: "pg_tblspc/", typ: tar.TypeDir},
		{name: "pg_tblspc/16384", typ: tar.TypeSymlink, link: "/srv/ts"},
		{name: "global/pg_control", typ: tar.TypeReg, data: "ctl"},
	}))); err != nil {
		t.Fatal(err)
	}
	if err := c.sync.wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.syncDirs(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(c.label), "START WAL LOCATION") {
		t.Errorf("label %q", c.label)
	}
	got, err := os.ReadFile(filepath.Join(dir, "data", "pg_tblspc", "16384", "PG_15_1", "5", "1"))
	if err != nil || string(got) != "tsdata" {
		t.Fatalf("tablespace file through link: %q %v", got, err)
	}
	want := map[string]string{"pg_tblspc/16384/PG_15_1/5/1": crcHex("tsdata"), "global/pg_control": crcHex("ctl")}
	for _, s := range c.sums {
		if w, ok := want[s.Path]; ok && w != s.Checksum {
			t.Errorf("%s checksum %s want %s", s.Path, s.Checksum, w)
		}
		delete(want, s.Path)
	}
	if len(want) != 0 {
		t.Errorf("not recorded: %v", want)
	}
}

// TestReuseCompare covers the compare-as-you-go link path: equal files are
// linked, a file differing in a later chunk is rewritten correctly.
func TestReuseCompare(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	big := strings.Repeat("a", 3<<20)
	changed := big[:2<<20+5] + "B" + big[2<<20+6:]
	prev, err := newCopier(filepath.Join(root, "prev"), CompressionNone, "CRC32C", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := prev.archive("base.tar", bytes.NewReader(tarOf(t, []member{{name: "same", typ: tar.TypeReg, data: big}, {name: "diff", typ: tar.TypeReg, data: big}, {name: "short", typ: tar.TypeReg, data: "abc"}}))); err != nil {
		t.Fatal(err)
	}
	prev.sync.wait()
	next, err := newCopier(filepath.Join(root, "next"), CompressionNone, "CRC32C", filepath.Join(root, "prev"))
	if err != nil {
		t.Fatal(err)
	}
	if err := next.archive("base.tar", bytes.NewReader(tarOf(t, []member{{name: "same", typ: tar.TypeReg, data: big}, {name: "diff", typ: tar.TypeReg, data: changed}, {name: "short", typ: tar.TypeReg, data: "abd"}}))); err != nil {
		t.Fatal(err)
	}
	if err := next.sync.wait(); err != nil {
		t.Fatal(err)
	}
	if next.linked != int64(len(big)) {
		t.Errorf("linked %d bytes, want %d", next.linked, len(big))
	}
	for name, want := range map[string]string{"same": big, "diff": changed, "short": "abd"} {
		got, err := os.ReadFile(filepath.Join(root, "next", "data", name))
		if err != nil || string(got) != want {
			t.Errorf("%s: content differs (%d bytes, %v)", name, len(got), err)
		}
	}
	a, _ := os.Stat(filepath.Join(root, "prev", "data", "same"))
	b, _ := os.Stat(filepath.Join(root, "next", "data", "same"))
	if !os.SameFile(a, b) {
		t.Error("unchanged file was not hard-linked")
	}
	if got, _ := os.ReadFile(filepath.Join(root, "prev", "data", "diff")); string(got) != big {
		t.Error("previous backup's file was modified")
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{0, 0, 0, "copied 0 B, 0.0 MB/s"},
		{50 << 20, 100 << 20, 10 * time.Second, "copied 50.0 MiB of ~100.0 MiB (50.0%), 5.2 MB/s, ETA 10s"},
		{200 << 20, 100 << 20, 10 * time.Second, "copied 200.0 MiB of ~100.0 MiB (100.0%), 21.0 MB/s"},
	}
	for _, tc := range tests {
		if got := progressLine(tc.done, tc.total, tc.elapsed); got != tc.want {
			t.Errorf("progressLine(%d, %d, %s) = %q, want %q", tc.done, tc.total, tc.elapsed, got, tc.want)
		}
	}
	var b bytes.Buffer
	clock := time.Unix(0, 0)
	p := newProgress(&b, true, 1000, func() time.Time { return clock })
	clock = clock.Add(time.Second)
	p.update(500)
	p.finish(1000)
	if out := b.String(); !strings.HasPrefix(out, "\rcopied 500 B of ~1000 B (50.0%)") || !strings.HasSuffix(out, "\n") {
		t.Errorf("tty output %q", out)
	}
}

func TestFailureText(t *testing.T) {
	t.Parallel()
	if got := failureText("copying files", errors.New("boom\nsecond line")); got != "failure copying files (boom)" {
		t.Errorf("failureText = %q", got)
	}
}

func TestOptionsValidation(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{},
		{Server: "pg", Compression: "bzip2"},
		{Server: "pg", ReuseBackup: "copy"},
		{Server: "pg", ReuseBackup: "link", Compression: "zstd"},
		{Server: "pg", Name: "latest"},
		{Server: "pg", Name: "20260101T000000"},
		{Server: "pg", MaxRateKBps: 10},
		{Server: "pg", CompressionDetail: "level=3"},                        // detail without compression
		{Server: "pg", Compression: "zstd", CompressionDetail: "threads=2"}, // unknown key
	} {
		if err := o.normalize(); err == nil {
			t.Errorf("normalize(%+v) accepted", o)
		}
	}
}

func TestServerCompressionChoice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		o            Options
		comp, detail string
	}{
		{Options{Compression: CompressionNone}, "", ""},
		{Options{Compression: CompressionLZ4}, "lz4", ""},
		{Options{Compression: CompressionZstd}, "zstd", DefaultZstdDetail},
		{Options{Compression: CompressionZstd, CompressionDetail: "level=9"}, "zstd", "level=9"},
		{Options{Compression: CompressionGzip}, "", ""}, // server gzip is too slow
		{Options{Compression: CompressionZstd, ClientCompression: true}, "", ""},
		{Options{Compression: CompressionLZ4, ClientCompression: true, CompressionDetail: "level=1"}, "", ""},
	}
	for _, tc := range tests {
		comp, detail := tc.o.serverCompression()
		if comp != tc.comp || detail != tc.detail {
			t.Errorf("%+v: server compression %q %q, want %q %q", tc.o, comp, detail, tc.comp, tc.detail)
		}
	}
}

func TestSplitArchiveName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		oid    uint32
		suffix string
		ok     bool
	}{
		{"base.tar", 0, "", true},
		{"base.tar.lz4", 0, ".lz4", true},
		{"16384.tar.zst", 16384, ".zst", true},
		{"16384.tar.gz", 16384, ".gz", true},
		{"16384.tar.bz2", 0, "", false},
		{"base.tar.zst.lz4", 0, "", false},
		{"../x.tar", 0, "", false},
		{"0.tar", 0, "", false},
		{"base", 0, "", false},
		{"base.tarx", 0, "", false},
	}
	for _, tc := range tests {
		oid, suffix, ok := splitArchiveName(tc.name)
		if oid != tc.oid || suffix != tc.suffix || ok != tc.ok {
			t.Errorf("splitArchiveName(%q) = %d, %q, %v; want %d, %q, %v", tc.name, oid, suffix, ok, tc.oid, tc.suffix, tc.ok)
		}
	}
}

// compressedTar returns a tar of files compressed with comp, and the tar.
func compressedTar(t *testing.T, comp string, files map[string]string) (compressed, plain []byte) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, name := range []string{"backup_label", "global/pg_control", "base/1/1234"} {
		data, ok := files[name]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(data))
	}
	tw.Close()
	c := &copier{compression: comp, workers: 1}
	var zb bytes.Buffer
	zw, err := c.compressor(&zb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zb.Bytes(), tb.Bytes()
}

func TestServerArchiveStoresAndChecks(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"backup_label":      "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
		"global/pg_control": strings.Repeat("c", 8192),
		"base/1/1234":       strings.Repeat("0123456789abcdef", 70000), // > 1 MB: several chunks
	}
	for _, comp := range []string{CompressionLZ4, CompressionZstd, CompressionGzip} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			z, _ := compressedTar(t, comp, files)
			suffix, _ := compressionSuffix(comp)
			name := "base.tar" + suffix
			store := func(t *testing.T, data []byte) (*copier, error) {
				c, err := newCopier(filepath.Join(t.TempDir(), "b"), comp, "CRC32C", "")
				if err != nil {
					t.Fatal(err)
				}
				c.server = true
				err = c.archive(name, bytes.NewReader(data))
				if serr := c.sync.wait(); err == nil {
					err = serr
				}
				return c, err
			}
			c, err := store(t, z)
			if err != nil {
				t.Fatalf("archive: %v", err)
			}
			got, err := os.ReadFile(filepath.Join(c.dir, "data", name))
			if err != nil || !bytes.Equal(got, z) {
				t.Fatalf("stored archive differs from the received bytes (%v)", err)
			}
			if string(c.label) != files["backup_label"] {
				t.Errorf("label %q", c.label)
			}
			if len(c.sums) != 3 || c.copied != int64(len(files["backup_label"])+8192+16*70000) {
				t.Fatalf("sums %+v, copied %d", c.sums, c.copied)
			}
			for _, s := range c.sums {
				h := c.newHash()
				h.Write([]byte(files[s.Path]))
				if s.Size != int64(len(files[s.Path])) || s.Checksum != hex.EncodeToString(h.Sum(nil)) {
					t.Errorf("%s: size %d checksum %s", s.Path, s.Size, s.Checksum)
				}
			}

			// Damaged streams fail rather than store a backup nobody can read.
			flipped := bytes.Clone(z)
			flipped[len(flipped)/2] ^= 0xff
			bad := map[string][]byte{
				"truncated": z[:len(z)*2/3],
				"trailing":  append(bytes.Clone(z), []byte("garbage after the end")...),
				"flipped":   flipped,
				"empty":     nil,
			}
			for what, data := range bad {
				if _, err := store(t, data); err == nil {
					t.Errorf("%s stream accepted", what)
				}
			}

			// An archive name that does not match the expected codec is a
			// protocol error (the server compresses with something else).
			c2, _ := newCopier(filepath.Join(t.TempDir(), "b"), comp, "CRC32C", "")
			c2.server = true
			if err := c2.archive("base.tar", bytes.NewReader(z)); !errors.Is(err, ErrProtocol) {
				t.Errorf("uncompressed name accepted: %v", err)
			}
			c2.sync.wait()
		})
	}
}

// TestVerifierStopsProducer checks that a consumer failing early releases a
// producer that still has data (no deadlock, error reported).
func TestVerifierStopsProducer(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	v := startVerifier(func(r io.Reader) error {
		r.Read(make([]byte, 10))
		return boom
	})
	chunk := make([]byte, 1<<20)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = v.write(chunk)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("write after consumer failure: %v", err)
	}
	v.abort()
}

// TestAsyncWriterManyWrites pushes many more buffers than the free list
// holds through an asyncWriter whose consumer is slower than the producer.
func TestAsyncWriterManyWrites(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	a := newAsyncWriter(nopCloser{&slowWriter{w: &out}})
	want := 0
	for i := range 200 {
		p := bytes.Repeat([]byte{byte(i)}, 1000+i)
		a.Write(p)
		want += len(p)
	}
	if err := a.Close(); err != nil || out.Len() != want {
		t.Fatalf("close %v, wrote %d of %d", err, out.Len(), want)
	}
}

type slowWriter struct{ w io.Writer }

func (s *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(50 * time.Microsecond)
	return s.w.Write(p)
}
