package checks

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
)

// A catalog imported from Barman 3.4 has no meta/: the directories check
// passes without even naming it, and the format probe says which Barman
// can read the catalog.
func TestProbeCatalogFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		setup    func(tgt *realTarget)
		hint     string
		dirsHint string
	}{
		{"new catalog, default 3.17", func(tgt *realTarget) { os.Remove(tgt.dirs.Meta) }, "new catalog, will be written for Barman 3.17", "created when first needed: "},
		{"new catalog, configured 3.4", func(tgt *realTarget) {
			tgt.dirs.DefaultFormat = catalog.FormatBarman34
			os.Remove(tgt.dirs.Meta)
		}, "new catalog, will be written for Barman 3.4", ""},
		{"Barman 3.4 catalog", func(tgt *realTarget) {
			os.Remove(tgt.dirs.Meta)
			tgt.writeFile(t, filepath.Join(tgt.dirs.Wals, "xlog.db"))
		}, "Barman 3.4 (base/<id>/backup.info, wals/xlog.db)", ""},
		{"Barman 3.17 catalog without meta/ yet", func(tgt *realTarget) {
			os.Remove(tgt.dirs.Meta)
			tgt.writeFile(t, tgt.dirs.XLogDB)
		}, "Barman 3.17 (meta/<id>-backup.info", "created when first needed: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tgt := newRealTarget(t, "pg")
			tc.setup(tgt)
			mustProbe(t, tgt, "catalog_format", OK, tc.hint)
			r := mustProbe(t, tgt, "directories", OK, tc.dirsHint)
			if tc.dirsHint == "" && r.Hint != "" {
				t.Errorf("directories hint = %q, want none", r.Hint)
			}
		})
	}
}

func TestProbeCatalogFormatCompression(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	tgt.cfg.Compression = config.CompressionZstd
	mustProbe(t, tgt, "catalog_format", OK, "Barman 3.17")
	os.Remove(tgt.dirs.Meta)
	tgt.writeFile(t, filepath.Join(tgt.dirs.Wals, "xlog.db"))
	mustProbe(t, tgt, "catalog_format", Critical, "compression zstd: Barman 3.4 cannot read")
	tgt.cfg.Compression = config.CompressionGzip
	mustProbe(t, tgt, "catalog_format", OK, "Barman 3.4")
}

func TestProbeCatalogFormatUnreadable(t *testing.T) {
	t.Parallel()
	tgt := newRealTarget(t, "pg")
	os.Remove(tgt.dirs.Meta)
	// A wals path that is a file makes every lookup inside it fail with
	// ENOTDIR, which is neither "exists" nor "missing".
	os.Remove(tgt.dirs.Wals)
	tgt.writeFile(t, tgt.dirs.Wals)
	mustProbe(t, tgt, "catalog_format", Critical, "detect catalog format")
}
