package incremental

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// testFile is a manifest entry for buildManifest: a path and a size.
type testFile struct {
	path string
	size int64
}

// buildManifest writes a manifest as the server lays it out, with a valid
// Manifest-Checksum.
func buildManifest(sysid uint64, start string, files ...testFile) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "{ \"PostgreSQL-Backup-Manifest-Version\": 2,\n\"System-Identifier\": %d,\n\"Files\": [\n", sysid)
	for i, f := range files {
		sep := ","
		if i == len(files)-1 {
			sep = ""
		}
		fmt.Fprintf(&b, "{ \"Path\": %q, \"Size\": %d, \"Last-Modified\": \"2026-12-03 10:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"0a0b0c0d\" }%s\n", f.path, f.size, sep)
	}
	fmt.Fprintf(&b, "],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": %q, \"End-LSN\": \"F/0\" }\n],\n", start)
	sum := sha256.Sum256([]byte(b.String()))
	fmt.Fprintf(&b, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:]))
	return []byte(b.String())
}

func mustManifest(t *testing.T, name string, raw []byte) *Manifest {
	t.Helper()
	m, err := ParseManifest(bytes.NewReader(raw), name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestParseManifest(t *testing.T) {
	raw := buildManifest(42, "0/2000028", testFile{"backup_label", 200}, testFile{"base/5/INCREMENTAL.16384", 12})
	m := mustManifest(t, "b1", raw)
	if m.Version != 2 || m.SystemIdentifier != 42 || len(m.Files) != 2 || m.StartLSN() != 0x2000028 {
		t.Fatalf("parsed %+v", m)
	}
	f, ok := m.File("base/5/INCREMENTAL.16384")
	if !ok || f.Size != 12 || f.Algorithm != "CRC32C" || f.Checksum != "0a0b0c0d" {
		t.Fatalf("File = %+v, %v", f, ok)
	}
}

func TestParseManifestRejects(t *testing.T) {
	good := buildManifest(1, "0/2000028", testFile{"base/1/1", 8192})
	resum := func(s string) []byte {
		body := s[:strings.LastIndex(s, "\"Manifest-Checksum\"")]
		sum := sha256.Sum256([]byte(body))
		return []byte(body + "\"Manifest-Checksum\": \"" + hex.EncodeToString(sum[:]) + "\"}\n")
	}
	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"damaged", bytes.Replace(good, []byte("8192"), []byte("8193"), 1), "checksum mismatch"},
		{"no checksum", []byte(`{"PostgreSQL-Backup-Manifest-Version": 2}`), "no Manifest-Checksum"},
		{"version", resum(strings.Replace(string(good), `Version": 2`, `Version": 3`, 1)), "must be 1 or 2"},
		{"unsafe path", resum(strings.Replace(string(good), `base/1/1`, `../etc/passwd`, 1)), "unsafe path"},
		{"absolute path", resum(strings.Replace(string(good), `base/1/1`, `/etc/passwd`, 1)), "unsafe path"},
		{"negative size", resum(strings.Replace(string(good), `8192`, `-1`, 1)), "no valid Size"},
		{"bad algorithm", resum(strings.Replace(string(good), `CRC32C`, `MD5`, 1)), `"MD5"`},
		{"bad LSN", resum(strings.Replace(string(good), `0/2000028`, `zz`, 1)), "WAL-Ranges entry 0 is invalid"},
		{"duplicate", resum(strings.Replace(string(good), "\n],", ",\n{ \"Path\": \"base/1/1\", \"Size\": 1 }\n],", 1)), "listed twice"},
		{"not json", resum("{ \"Files\": [ \n\"Manifest-Checksum\": \"x\"}"), "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest(bytes.NewReader(tt.raw), "20261203T100000")
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "20261203T100000") {
				t.Fatalf("err = %v, want ErrCorrupt naming the backup with %q", err, tt.want)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add(buildManifest(1, "0/2000028", testFile{"base/1/1", 8192}, testFile{"base/1/INCREMENTAL.2", 12}))
	f.Add(buildManifest(0, "1/0", testFile{"PG_VERSION", 3}))
	f.Add([]byte(`{"Manifest-Checksum": "00"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseManifest(bytes.NewReader(raw), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		for _, f := range m.Files {
			if got, ok := m.File(f.Path); !ok || got != f {
				t.Fatalf("File(%q) inconsistent", f.Path)
			}
		}
		_ = m.StartLSN()
	})
}

const (
	fullLabel = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000080\nBACKUP METHOD: streamed\nSTART TIMELINE: 1\n"
	incrLabel = "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\nCHECKPOINT LOCATION: 0/4000080\nSTART TIMELINE: 1\nINCREMENTAL FROM LSN: 0/2000028\nINCREMENTAL FROM TLI: 1\n"
)

func TestLabels(t *testing.T) {
	full, err := ParseLabel([]byte(fullLabel), "b1")
	if err != nil || full.Incremental() || full.StartLSN != 0x2000028 || full.StartTimeline != 1 {
		t.Fatalf("full label: %+v, %v", full, err)
	}
	incr, err := ParseLabel([]byte(incrLabel), "b2")
	if err != nil || !incr.Incremental() || incr.IncrementalFromLSN != 0x2000028 || incr.IncrementalFromTimeline != 1 {
		t.Fatalf("incremental label: %+v, %v", incr, err)
	}
	if got := string(FullLabel([]byte(incrLabel))); strings.Contains(got, "INCREMENTAL") || !strings.HasPrefix(got, "START WAL LOCATION: 0/4000028") || !strings.HasSuffix(got, "START TIMELINE: 1\n") {
		t.Fatalf("FullLabel = %q", got)
	}
	ms := []*Manifest{
		mustManifest(t, "b1", buildManifest(1, "0/2000028")),
		mustManifest(t, "b2", buildManifest(1, "0/4000028")),
	}
	if err := CheckLabels(ms, []Label{full, incr}); err != nil {
		t.Fatal(err)
	}
	wrongParent := incr
	wrongParent.IncrementalFromLSN = 0x3000028
	for name, labels := range map[string][]Label{
		"missing parent":  {incr, incr},
		"wrong parent":    {full, wrongParent},
		"not incremental": {full, full},
	} {
		if err := CheckLabels(ms, labels); !errors.Is(err, ErrBrokenChain) {
			t.Errorf("%s: err = %v, want ErrBrokenChain", name, err)
		}
	}
}

func TestParseLabelRejects(t *testing.T) {
	for name, raw := range map[string]string{
		"no start":       "START TIMELINE: 1\n",
		"bad lsn":        "START WAL LOCATION: x (file 1)\n",
		"half increment": fullLabel + "INCREMENTAL FROM LSN: 0/1\n",
		"zero timeline":  fullLabel[:len(fullLabel)-len("START TIMELINE: 1\n")] + "START TIMELINE: 0\n",
		"repeated":       fullLabel + "START TIMELINE: 1\n",
	} {
		if _, err := ParseLabel([]byte(raw), "b9"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "b9") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func FuzzParseLabel(f *testing.F) {
	f.Add([]byte(fullLabel))
	f.Add([]byte(incrLabel))
	f.Add([]byte("INCREMENTAL FROM TLI: 4294967296\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		l, err := ParseLabel(raw, "fuzz")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if bytes.Contains(FullLabel(raw), []byte("\nINCREMENTAL FROM LSN: ")) {
			t.Fatal("FullLabel kept an INCREMENTAL line")
		}
		_ = l.Incremental()
	})
}

func TestPlanDecidesPerPath(t *testing.T) {
	full := mustManifest(t, "b1", buildManifest(7, "0/2000028",
		testFile{"backup_label", 100}, testFile{"PG_VERSION", 3},
		testFile{"base/5/100", 16384}, testFile{"base/5/200", 8192}, testFile{"base/6/300", 8192}, testFile{"base/5/100.1", 8192}))
	i1 := mustManifest(t, "b2", buildManifest(7, "0/4000028",
		testFile{"backup_label", 120}, testFile{"PG_VERSION", 3},
		testFile{"base/5/INCREMENTAL.100", 8192 * 2}, testFile{"base/5/200", 8192}, testFile{"base/6/INCREMENTAL.300", 12}))
	i2 := mustManifest(t, "b3", buildManifest(7, "0/6000028",
		testFile{"backup_label", 120}, testFile{"PG_VERSION", 3},
		testFile{"base/5/INCREMENTAL.100", 12}, testFile{"base/5/INCREMENTAL.200", 8192 * 2}))
	plan, err := NewPlan([]*Manifest{full, i1, i2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range plan.Steps {
		got = append(got, fmt.Sprintf("%s %s %d..%d %v", s.Path, s.Action, s.From, s.To, s.SourcePaths()))
	}
	want := []string{
		"PG_VERSION copy 2..2 [PG_VERSION]",
		"backup_label rewrite-label 2..2 [backup_label]",
		"base/5/100 reconstruct 0..2 [base/5/100 base/5/INCREMENTAL.100 base/5/INCREMENTAL.100]",
		"base/5/100.1 absent 0..0 []",
		"base/5/200 reconstruct 1..2 [base/5/200 base/5/INCREMENTAL.200]",
		"base/6/300 absent 1..1 []",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	src := plan.Steps[2].Sources
	if src[0].Size != 16384 || src[0].Incremental || !src[1].Incremental || src[2].Name != "backup b3 base/5/INCREMENTAL.100" {
		t.Fatalf("sources %+v", src)
	}
}

func TestPlanRejectsBrokenChains(t *testing.T) {
	full := mustManifest(t, "b1", buildManifest(7, "0/2000028", testFile{"base/5/100", 8192}))
	i1 := mustManifest(t, "b2", buildManifest(7, "0/4000028", testFile{"base/5/INCREMENTAL.100", 12}))
	gap := mustManifest(t, "b2", buildManifest(7, "0/4000028", testFile{"base/5/101", 12}))
	i2 := mustManifest(t, "b3", buildManifest(7, "0/6000028", testFile{"base/5/INCREMENTAL.100", 12}))
	other := mustManifest(t, "b3", buildManifest(8, "0/6000028", testFile{"base/5/INCREMENTAL.100", 12}))
	both := mustManifest(t, "b3", buildManifest(7, "0/6000028", testFile{"base/5/INCREMENTAL.100", 12}, testFile{"base/5/100", 8192}))
	tests := []struct {
		name  string
		chain []*Manifest
		is    error
		want  string
	}{
		{"empty", nil, ErrBrokenChain, "no backups"},
		{"parent missing", []*Manifest{i1, i2}, ErrBrokenChain, "b2 should be the chain's full backup but holds the incremental file base/5/INCREMENTAL.100"},
		{"file missing in the middle", []*Manifest{full, gap, i2}, ErrBrokenChain, "b2 has neither base/5/100 nor base/5/INCREMENTAL.100"},
		{"other cluster", []*Manifest{full, i1, other}, ErrBrokenChain, "cluster 8"},
		{"out of order", []*Manifest{full, i2, i1}, ErrBrokenChain, "does not start after"},
		{"both forms", []*Manifest{full, both}, ErrCorrupt, "lists both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPlan(tt.chain)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %v with %q", err, tt.is, tt.want)
			}
		})
	}
}
