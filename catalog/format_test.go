package catalog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func bareLayout(t *testing.T) Layout {
	t.Helper()
	root := t.TempDir()
	return NewLayout("pg", filepath.Join(root, "pg"), filepath.Join(root, "locks"))
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestDetectFormat(t *testing.T) {
	t.Parallel()
	legacyInfo := func(l Layout) { mustWrite(t, l.LegacyBackupInfoPath("20260101T000000"), "status=DONE\n") }
	for _, tc := range []struct {
		name  string
		setup func(l Layout)
		want  Format
		found bool
	}{
		{"empty", func(Layout) {}, 0, false},
		{"empty dirs of Barman 3.4", func(l Layout) {
			for _, d := range []string{l.WalsDir, l.BaseDir, l.IncomingDir} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
		}, 0, false},
		{"legacy xlog.db", func(l Layout) { mustWrite(t, filepath.Join(l.WalsDir, "xlog.db"), "") }, FormatBarman34, true},
		{"server xlog.db", func(l Layout) { mustWrite(t, filepath.Join(l.WalsDir, "pg-xlog.db"), "") }, FormatBarman317, true},
		{"meta only", func(l Layout) { os.MkdirAll(l.MetaDir, 0o700) }, FormatBarman317, true},
		{"legacy backup.info only", legacyInfo, FormatBarman34, true},
		{"legacy xlog.db beats meta left by an older Cellar", func(l Layout) {
			mustWrite(t, filepath.Join(l.WalsDir, "xlog.db"), "")
			mustWrite(t, l.MetaBackupInfoPath("20260101T000000"), "status=DONE\n")
		}, FormatBarman34, true},
		{"3.17 upgrade of a legacy catalog", func(l Layout) {
			legacyInfo(l)
			mustWrite(t, filepath.Join(l.WalsDir, "pg-xlog.db"), "")
		}, FormatBarman317, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := bareLayout(t)
			tc.setup(l)
			got, found, err := DetectFormat(l)
			if err != nil || got != tc.want || found != tc.found {
				t.Errorf("DetectFormat = %v, %v, %v; want %v, %v", got, found, err, tc.want, tc.found)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Format{"": FormatBarman317, "3.17": FormatBarman317, " 3.4 ": FormatBarman34} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v", in, got, err)
		}
		if f, _ := ParseFormat(in); f.String() != strings.TrimSpace(in) && in != "" {
			t.Errorf("String of %q = %s", in, f)
		}
	}
	for _, bad := range []string{"3", "3.13", "latest", "3.4.0"} {
		if _, err := ParseFormat(bad); err == nil || !strings.Contains(err.Error(), "barman_compatibility") {
			t.Errorf("ParseFormat(%q) = %v, want an error naming the option", bad, err)
		}
	}
}

func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"", "3.4", "3.17", "x", "3.4\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFormat(s)
		if err != nil {
			return
		}
		again, err := ParseFormat(got.String())
		if err != nil || again != got {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}

func sampleBackup(id string) *BackupInfo {
	b := NewBackupInfo(id)
	b.Status = StatusDone
	b.Mode = "postgres"
	b.ServerName = "pg"
	b.BeginWAL, b.EndWAL = "000000010000000000000002", "000000010000000000000002"
	b.BeginTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.EndTime = b.BeginTime.Add(time.Minute)
	b.Timeline, b.Version = 1, 150018
	b.Size, b.ClusterSize = Int64(100), Int64(200)
	b.DataChecksums, b.SummarizeWAL = "off", "off"
	b.ChildrenBackupIDs = []string{"20260102T000000"}
	return b
}

func keysOf(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, _, _ := strings.Cut(line, "=")
		keys = append(keys, k)
	}
	return keys
}

// A Barman 3.4 catalog gets backup.info, annotations and xlog.db lines
// where and as Barman 3.4 writes them, and no meta/ directory.
func TestLegacyCatalogWrites(t *testing.T) {
	t.Parallel()
	l := bareLayout(t)
	mustWrite(t, filepath.Join(l.WalsDir, "xlog.db"), "000000010000000000000001\t16777216\t1400000000.0\tNone\n")
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	c := Open(l)
	b := sampleBackup("20260101T000000")
	if err := c.Save(b); err != nil {
		t.Fatal(err)
	}
	if err := c.SetKeep(b.ID, KeepFull); err != nil {
		t.Fatal(err)
	}
	if err := OpenXLogDB(l).Append(t.Context(), WALInfo{Name: "000000010000000000000002", Size: 10, Time: 1.5, Compression: "gzip"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.MetaDir); !os.IsNotExist(err) {
		t.Errorf("meta/ exists in a Barman 3.4 catalog (%v)", err)
	}
	for _, k := range keysOf(t, l.LegacyBackupInfoPath(b.ID)) {
		if !FormatBarman34.hasKey(k) {
			t.Errorf("backup.info has key %s, unknown to Barman 3.4", k)
		}
	}
	if v, err := os.ReadFile(filepath.Join(l.BackupDirPath(b.ID), "annotations", "keep")); err != nil || string(v) != "full" {
		t.Errorf("keep annotation = %q, %v", v, err)
	}
	data, _ := os.ReadFile(filepath.Join(l.WalsDir, "xlog.db"))
	if want := "000000010000000000000002\t10\t1.5\tgzip\n"; !bytes.HasSuffix(data, []byte(want)) {
		t.Errorf("xlog.db = %q, want it to end with %q", data, want)
	}
	got, err := c.Get(b.ID)
	if err != nil || got.Status != StatusDone || got.ClusterSize != nil {
		t.Errorf("Get = %+v, %v", got, err)
	}
}

// A backup.info and keep annotation an older Cellar put in meta/ of a
// Barman 3.4 catalog move to the legacy places on the next write.
func TestLegacyCatalogMovesStaleMeta(t *testing.T) {
	t.Parallel()
	l := bareLayout(t)
	mustWrite(t, filepath.Join(l.WalsDir, "xlog.db"), "")
	b := sampleBackup("20260101T000000")
	mustWrite(t, l.MetaBackupInfoPath(b.ID), string(b.Marshal()))
	mustWrite(t, filepath.Join(l.MetaDir, b.ID+"-keep"), "standalone")
	c := Open(l)
	got, err := c.Get(b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Save(got); err != nil {
		t.Fatal(err)
	}
	if err := c.SetKeep(b.ID, KeepStandalone); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{l.MetaBackupInfoPath(b.ID), filepath.Join(l.MetaDir, b.ID+"-keep")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists (%v)", p, err)
		}
	}
	if k, err := c.Keep(b.ID); err != nil || k != KeepStandalone {
		t.Errorf("Keep = %q, %v", k, err)
	}
}

// A new catalog is written in the configured format.
func TestNewCatalogUsesDefaultFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		format   Format
		xlogName string
		meta     bool
	}{
		{FormatBarman34, "xlog.db", false},
		{FormatBarman317, "pg-xlog.db", true},
	} {
		t.Run(tc.format.String(), func(t *testing.T) {
			l := bareLayout(t)
			l.DefaultFormat = tc.format
			if err := l.MakeDirs(); err != nil {
				t.Fatal(err)
			}
			if err := OpenXLogDB(l).Append(t.Context(), WALInfo{Name: "000000010000000000000001", Size: 1, Time: 1}); err != nil {
				t.Fatal(err)
			}
			if err := Open(l).Save(sampleBackup("20260101T000000")); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(l.WalsDir, tc.xlogName)); err != nil {
				t.Error(err)
			}
			_, err := os.Stat(l.MetaDir)
			if (err == nil) != tc.meta {
				t.Errorf("meta/ present = %v, want %v", err == nil, tc.meta)
			}
			if f, found, err := DetectFormat(l); err != nil || !found || f != tc.format {
				t.Errorf("after first writes DetectFormat = %v, %v, %v", f, found, err)
			}
		})
	}
}

func TestMarshalFormatRefusesUnstorableFields(t *testing.T) {
	t.Parallel()
	b := sampleBackup("20260101T000000")
	b.Encryption = "gpg"
	if _, err := b.MarshalFormat(FormatBarman34); err == nil || !strings.Contains(err.Error(), "encryption") {
		t.Errorf("MarshalFormat(3.4) of an encrypted backup = %v", err)
	}
	if _, err := b.MarshalFormat(FormatBarman317); err != nil {
		t.Error(err)
	}
	l := bareLayout(t)
	mustWrite(t, filepath.Join(l.WalsDir, "xlog.db"), "")
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	err := OpenXLogDB(l).Append(t.Context(), WALInfo{Name: "000000010000000000000001", Size: 1, Time: 1, Encryption: "gpg"})
	if err == nil || !strings.Contains(err.Error(), "3.4") {
		t.Errorf("Append of an encrypted WAL to a 3.4 catalog = %v", err)
	}
}
