package catalog

import (
	"os"
	"path/filepath"
	"testing"
)

// Catalogs written by Barman 3.4 (captured from Debian's barman) and in
// Barman 3.17's layout: Cellar's rewrite of an unchanged backup.info, its
// xlog.db appends and its annotations are byte for byte what that Barman
// writes, in the places it writes them, and nothing lands in the other
// layout's places.
func TestFixtureCatalogsByteCompared(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, server, fixture, id string
		xlogDB                    string // under wals/
		infoPath                  func(Layout, string) string
		otherInfo                 func(Layout, string) string
		keepPath                  func(Layout, string) string
		walLine                   string
		format                    Format
	}{
		{
			name: "3.4", server: "pg", fixture: "testdata/barman34/pg", id: "20261203T202301",
			xlogDB: "xlog.db", infoPath: Layout.LegacyBackupInfoPath, otherInfo: Layout.MetaBackupInfoPath,
			keepPath: func(l Layout, id string) string { return filepath.Join(l.BaseDir, id, "annotations", "keep") },
			walLine:  "000000010000000000000003\t16777216\t1796329400.5\tNone\n",
			format:   FormatBarman34,
		},
		{
			name: "3.17", server: "pg1", fixture: "testdata/barman/pg1", id: "20240116T030000",
			xlogDB: "pg1-xlog.db", infoPath: Layout.MetaBackupInfoPath, otherInfo: Layout.LegacyBackupInfoPath,
			keepPath: func(l Layout, id string) string { return filepath.Join(l.MetaDir, id+"-keep") },
			walLine:  "000000010000000000000003\t16777216\t1796329400.5\tNone\tNone\n",
			format:   FormatBarman317,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			l := NewLayout(tc.server, filepath.Join(root, tc.server), root)
			copyTree(t, tc.fixture, l.BackupDir)
			if tc.name == "3.17" {
				copyTree(t, "testdata/xlogdb/current", l.WalsDir)
			}
			if f, err := l.Format(); err != nil || f != tc.format {
				t.Fatalf("Format = %v, %v", f, err)
			}
			c := Open(l)
			infoPath := tc.infoPath(l, tc.id)
			origInfo := readFile(t, infoPath)
			b, err := c.Get(tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Save(b); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, infoPath); got != origInfo {
				t.Errorf("re-saved backup.info differs:\n%s\nwant\n%s", got, origInfo)
			}
			if _, err := os.Stat(tc.otherInfo(l, tc.id)); !os.IsNotExist(err) {
				t.Errorf("backup.info also written to %s (%v)", tc.otherInfo(l, tc.id), err)
			}

			xlogPath := filepath.Join(l.WalsDir, tc.xlogDB)
			origXLog := readFile(t, xlogPath)
			if err := l.MakeDirs(); err != nil {
				t.Fatal(err)
			}
			if err := OpenXLogDB(l).Append(t.Context(), WALInfo{Name: "000000010000000000000003", Size: 16 << 20, Time: 1796329400.5}); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, xlogPath); got != origXLog+tc.walLine {
				t.Errorf("xlog.db after append:\n%q\nwant\n%q", got, origXLog+tc.walLine)
			}

			if err := c.SetKeep(tc.id, KeepFull); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, tc.keepPath(l, tc.id)); got != "full" {
				t.Errorf("keep annotation = %q", got)
			}
			if _, err := os.Stat(l.MetaDir); (err == nil) != (tc.format == FormatBarman317) {
				t.Errorf("meta/ present = %v in a %s catalog", err == nil, tc.format)
			}
		})
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
