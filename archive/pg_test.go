package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/wal"
)

// TestArchiveRealCluster: PostgreSQL's archive_command copies every
// segment into incoming/ and into a reference directory; archive-wal
// stores them (zstd) and get-wal must return PostgreSQL's bytes exactly.
func TestArchiveRealCluster(t *testing.T) {
	t.Parallel()
	root := pgtest.MkdirForPostgres(t)
	l := catalog.NewLayout(testServer, filepath.Join(root, testServer), filepath.Join(root, "locks"))
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	pgtest.GrantPostgres(t, l.IncomingDir)
	ref := filepath.Join(root, "reference")
	if err := os.Mkdir(ref, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.GrantPostgres(t, ref)
	// Reference copy first; the incoming copy goes through a hidden temp
	// name and a rename, as a careful archive_command must.
	cmd := "cp %p '" + ref + "/%f' && cp %p '" + l.IncomingDir + "/.%f.tmp' && mv '" + l.IncomingDir + "/.%f.tmp' '" + l.IncomingDir + "/%f'"
	c := pgtest.Start(t, pgtest.Options{ArchiveCommand: cmd})
	sysID, err := strconv.ParseUint(c.SystemID(t), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	segs := c.GenerateWAL(t, 50)
	c.WaitArchived(t, segs[len(segs)-1])
	t.Logf("generated and archive_command'ed %d segments in %v", len(segs), time.Since(start))
	start = time.Now()

	opts := Options{Server: testServer, Layout: l, Compression: CompressionZstd, SystemID: sysID}
	a, err := NewArchiver(opts)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.ArchiveWAL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unknown)+len(rep.Duplicates)+len(rep.Deferred) != 0 {
		t.Fatalf("report %+v", rep)
	}
	t.Logf("archive-wal: %d files in %v", len(rep.Archived), time.Since(start))
	start = time.Now()
	refs, err := os.ReadDir(ref)
	if err != nil {
		t.Fatal(err)
	}
	segments := 0
	for _, r := range refs {
		want := sha256.New()
		f, err := os.Open(filepath.Join(ref, r.Name()))
		if err != nil {
			t.Fatal(err)
		}
		wn, err := io.Copy(want, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.New()
		cw := &countWriter{w: got}
		if err := GetWAL(context.Background(), opts, r.Name(), cw, GetOptions{}); err != nil {
			t.Fatalf("GetWAL %s: %v", r.Name(), err)
		}
		if !bytes.Equal(got.Sum(nil), want.Sum(nil)) || cw.n != wn {
			t.Errorf("%s: get-wal returned %d bytes that differ from PostgreSQL's %d", r.Name(), cw.n, wn)
		}
		if wal.IsSegmentName(r.Name()) {
			segments++
		}
	}
	t.Logf("verified %d files in %v", len(refs), time.Since(start))
	if segments < 50 {
		t.Errorf("only %d segments archived", segments)
	}
	for _, s := range segs {
		if _, err := FindWAL(opts, s, false); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	e := &testEnv{t: t, opts: opts}
	if n := len(e.xlogNames()); n != len(refs) {
		t.Errorf("xlog.db has %d lines for %d files", n, len(refs))
	}
	e.checkRebuildAgrees()
}
