package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/archive/stream"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/pgtest"
	"github.com/cellar-backup/cellar/server"
	"github.com/cellar-backup/cellar/wal"
)

// Issue 4's end-to-end path: WAL streamed by receive-wal into streaming/
// is moved by archive-wal into wals/, and every archived segment is
// byte-identical to the server's own pg_wal copy.
func TestStreamedWALArchivedByteIdentical(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{ExtraConf: []string{"wal_keep_size = '1GB'"}})
	cfgFile, _ := pgConfig(t, c, "    streaming_archiver: true\n    archiver: false\n    slot_name: cellar_e2e\n    create_slot: auto\n")
	cfg, err := config.Load(config.LoadOptions{File: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MakeDirectories(); err != nil {
		t.Fatal(err)
	}
	so, err := s.StreamOptions()
	if err != nil {
		t.Fatal(err)
	}
	sup, err := stream.NewSupervisor(so, stream.Backoff{})
	if err != nil {
		t.Fatal(err)
	}
	sup.Start(t.Context())
	defer func() { sup.Stop(); sup.Wait() }()

	// Wait for the receiver to connect, then write real WAL.
	deadline := time.Now().Add(30 * time.Second)
	for !sup.State().Running || sup.State().LastFlushLSN == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("receiver did not start: %+v", sup.State())
		}
		time.Sleep(20 * time.Millisecond)
	}
	closed := c.GenerateWAL(t, 6)
	last, err := wal.ParseName(closed[len(closed)-1])
	if err != nil {
		t.Fatal(err)
	}
	// Every closed segment must be complete in streaming/ before archiving,
	// and the next segment's .partial must exist: without a .partial,
	// archive-wal holds the newest complete segment back (as Barman does).
	c.Exec(t, "CREATE TABLE after_switch AS SELECT 1 AS x")
	partial := filepath.Join(s.Layout().StreamingDir, last.Next(wal.DefaultSegmentSize).String()+".partial")
	for {
		_, errSeg := os.Stat(filepath.Join(s.Layout().StreamingDir, last.String()))
		_, errPartial := os.Stat(partial)
		if errSeg == nil && errPartial == nil {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("segment %s or %s never appeared in streaming/ (state %+v)", last, partial, sup.State())
		}
		time.Sleep(20 * time.Millisecond)
	}

	out, errOut, code := runCLI(t, "-c", cfgFile, "archive-wal", "pg")
	if code != 0 || !strings.Contains(out, "streaming") {
		t.Fatalf("archive-wal: %d %q %q", code, out, errOut)
	}
	var archived []string
	if err := s.XLogDB().Scan(t.Context(), func(w catalog.WALInfo) error {
		archived = append(archived, w.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, name := range archived {
		n, err := wal.ParseName(name)
		if err != nil || n.Kind != wal.KindSegment {
			continue
		}
		got, err := os.ReadFile(s.Layout().WALPath(n))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
		if err != nil {
			t.Fatalf("server copy of %s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("archived %s differs from the server's pg_wal copy", name)
		}
		compared++
	}
	for _, name := range closed {
		found := false
		for _, a := range archived {
			found = found || a == name
		}
		if !found {
			t.Errorf("closed segment %s was not archived (archived: %v)", name, archived)
		}
	}
	if compared < len(closed) {
		t.Fatalf("compared %d segments, want at least %d", compared, len(closed))
	}
	t.Logf("%d streamed segments archived byte-identical", compared)
}
