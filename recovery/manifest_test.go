package recovery

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
)

// sealManifest appends the Manifest-Checksum PostgreSQL computes over
// everything before it.
func sealManifest(body string) string {
	sum := sha256.Sum256([]byte(body))
	return body + `"Manifest-Checksum": "` + hex.EncodeToString(sum[:]) + "\"}\n"
}

const manifestHead = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n"

func TestParseManifest(t *testing.T) {
	good := sealManifest(manifestHead +
		`{ "Path": "base/1/1259", "Size": 8192, "Last-Modified": "2025-01-01 00:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "0a1B2c3d" },` + "\n" +
		`{ "Encoded-Path": "` + hex.EncodeToString([]byte("pg_tblspc/16385/PG_15/5/x\xff")) + `", "Size": 0, "Checksum-Algorithm": "NONE" }` + "\n],\n" +
		`"WAL-Ranges": [],` + "\n")
	m, err := parseManifest([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if s := m["base/1/1259"]; !s.ok || s.size != 8192 || s.algorithm != "CRC32C" || s.checksum != "0a1b2c3d" {
		t.Errorf("base/1/1259: %+v", s)
	}
	if s := m["pg_tblspc/16385/PG_15/5/x\xff"]; !s.ok || s.checksum != "" {
		t.Errorf("encoded path entry: %+v (manifest %v)", s, m)
	}
	// PostgreSQL 17+ writes version 2, with the system identifier.
	v2 := sealManifest(`{"PostgreSQL-Backup-Manifest-Version": 2, "System-Identifier": 7, "Files": [` + "\n" +
		`{ "Path": "base/1/1259", "Size": 8192, "Checksum-Algorithm": "CRC32C", "Checksum": "0a1b2c3d" }` + "\n],\n")
	if m, err := parseManifest([]byte(v2)); err != nil || !m["base/1/1259"].ok {
		t.Errorf("version 2 manifest: %v %v", m, err)
	}
	entry := func(e string) string { return sealManifest(manifestHead + e + "\n],\n") }
	for _, tc := range []struct {
		name, doc, msg string
	}{
		{"tampered", strings.Replace(good, "8192", "8193", 1), "manifest itself is damaged"},
		{"no-checksum", manifestHead + "]}", "no Manifest-Checksum"},
		{"version", sealManifest(`{"PostgreSQL-Backup-Manifest-Version": 3, `), "version 3"},
		{"escape", entry(`{"Path": "../etc/passwd", "Size": 1}`), "unsafe path"},
		{"absolute", entry(`{"Path": "/etc/passwd", "Size": 1}`), "unsafe path"},
		{"unclean", entry(`{"Path": "base/./1", "Size": 1}`), "unsafe path"},
		{"no-size", entry(`{"Path": "base/1"}`), "Size"},
		{"negative-size", entry(`{"Path": "base/1", "Size": -1}`), "Size"},
		{"algorithm", entry(`{"Path": "base/1", "Size": 1, "Checksum-Algorithm": "MD5", "Checksum": "00"}`), "MD5"},
		{"bad-hex", entry(`{"Path": "base/1", "Size": 1, "Checksum-Algorithm": "CRC32C", "Checksum": "xyz"}`), "bad CRC32C checksum"},
		{"twice", entry(`{"Path": "base/1", "Size": 1}, {"Path": "base/1", "Size": 1}`), "listed twice"},
		{"not-json", "PGDMP", "not a backup manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseManifest([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.msg)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(sealManifest(manifestHead + `{ "Path": "base/1/1259", "Size": 8192, "Checksum-Algorithm": "CRC32C", "Checksum": "0a1b2c3d" }` + "\n],\n")))
	f.Add([]byte(sealManifest(manifestHead + `{ "Encoded-Path": "2e2e2f78", "Size": 1 }` + "\n],\n")))
	f.Add([]byte(sealManifest(manifestHead + `{ "Path": "a", "Size": 1, "Checksum-Algorithm": "SHA256", "Checksum": "00" }` + "\n],\n")))
	f.Add([]byte(manifestHead + "]}"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			return
		}
		for p, s := range m {
			if !filepath.IsLocal(p) || !s.ok || s.size < 0 {
				t.Fatalf("accepted entry %q %+v", p, s)
			}
			if s.algorithm != "NONE" && s.checksum == "" {
				t.Fatalf("entry %q has algorithm %s without checksum", p, s.algorithm)
			}
		}
	})
}
