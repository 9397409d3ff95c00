package incremental

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

type tarEntry struct {
	name string
	typ  byte
	data string
}

func buildTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.data))}
		if e.typ == tar.TypeDir {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestIndexTar(t *testing.T) {
	long := strings.Repeat("p", 300) + "/file" // needs a PAX header
	raw := buildTar(t,
		tarEntry{name: "base/", typ: tar.TypeDir},
		tarEntry{name: "base/1/INCREMENTAL.2", typ: tar.TypeReg, data: strings.Repeat("x", 1000)},
		tarEntry{name: "./PG_VERSION", typ: tar.TypeReg, data: "17\n"},
		tarEntry{name: long, typ: tar.TypeReg, data: "long name"},
		tarEntry{name: "empty", typ: tar.TypeReg},
	)
	idx, err := IndexTar(bytes.NewReader(raw), "base.tar")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"base/1/INCREMENTAL.2": strings.Repeat("x", 1000), "PG_VERSION": "17\n", long: "long name", "empty": ""}
	for name, data := range want {
		sec, ok := idx.Section(bytes.NewReader(raw), name)
		if !ok {
			t.Fatalf("%s not indexed", name)
		}
		got, _ := io.ReadAll(sec)
		if string(got) != data {
			t.Errorf("%s: read %q, want %q", name, got, data)
		}
	}
	if len(idx.Files) != len(want) || len(idx.Dirs) != 1 || idx.Dirs[0] != "base" {
		t.Errorf("index %+v", idx)
	}
}

// retype changes the type flag of the header at offset off and fixes its
// checksum: archive/tar's writer refuses to write sparse members.
func retype(raw []byte, off int, flag byte) []byte {
	h := raw[off : off+512]
	h[156] = flag
	copy(h[148:156], "        ")
	sum := 0
	for _, b := range h {
		sum += int(b)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return raw
}

// gnuSparse is an old-GNU sparse member "s" with an empty sparse map.
func gnuSparse(t *testing.T) []byte {
	raw := buildTar(t, tarEntry{name: "s", typ: tar.TypeReg})
	copy(raw[257:265], "ustar  \x00") // GNU magic and version
	return retype(raw, 0, tar.TypeGNUSparse)
}

// paxSparse is a GNU 0.1 PAX sparse member "s": a PAX header (written as a
// regular member, then retyped) followed by the member itself.
func paxSparse(t *testing.T) []byte {
	var records string
	for _, kv := range []string{"GNU.sparse.numblocks=1", "GNU.sparse.map=0,4", "GNU.sparse.size=4"} {
		n := len(kv) + 3
		n += len(strconv.Itoa(n+len(strconv.Itoa(n)))) - 1
		records += strconv.Itoa(n) + " " + kv + "\n"
	}
	raw := buildTar(t, tarEntry{name: "PaxHeaders/s", typ: tar.TypeReg, data: records}, tarEntry{name: "s", typ: tar.TypeReg, data: "data"})
	return retype(raw, 0, tar.TypeXHeader)
}

func TestIndexTarRejects(t *testing.T) {
	good := buildTar(t, tarEntry{name: "a", typ: tar.TypeReg, data: strings.Repeat("a", 700)})
	tests := map[string]struct {
		raw  []byte
		want string
	}{
		"escaping name":  {buildTar(t, tarEntry{name: "../etc/x", typ: tar.TypeReg}), "unsafe member name"},
		"absolute name":  {buildTar(t, tarEntry{name: "/etc/x", typ: tar.TypeReg}), "unsafe member name"},
		"duplicate":      {buildTar(t, tarEntry{name: "a", typ: tar.TypeReg}, tarEntry{name: "a", typ: tar.TypeReg}), "appears twice"},
		"old GNU sparse": {gnuSparse(t), "member s is sparse"},
		"PAX sparse":     {paxSparse(t), "member s is sparse"},
		"truncated":      {good[:600], "tar archive base.tar"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := IndexTar(bytes.NewReader(tt.raw), "base.tar")
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrCorrupt with %q", err, tt.want)
			}
		})
	}
}

// FuzzIndexTar: any input is indexed or rejected with ErrCorrupt, and every
// indexed member lies inside the input.
func FuzzIndexTar(f *testing.F) {
	f.Add(buildTar(f, tarEntry{name: "base/", typ: tar.TypeDir}, tarEntry{name: "base/1/2", typ: tar.TypeReg, data: "data"}))
	f.Add(buildTar(f, tarEntry{name: strings.Repeat("n", 200), typ: tar.TypeReg, data: "pax"}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		idx, err := IndexTar(bytes.NewReader(raw), "fuzz.tar")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		for name, m := range idx.Files {
			if m.Offset < 0 || m.Size < 0 || m.Offset+m.Size > int64(len(raw)) {
				t.Fatalf("%s: member [%d,+%d) outside the %d-byte input", name, m.Offset, m.Size, len(raw))
			}
		}
	})
}
