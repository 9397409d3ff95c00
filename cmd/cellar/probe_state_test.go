package main

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/checktarget"
	"github.com/cellar-backup/cellar/server"
)

// TestLoadProbeState: the exporter and daemon prime new targets from the
// state earlier ones saved; an unusable state file is logged, naming the
// server, and the target starts cold.
func TestLoadProbeState(t *testing.T) {
	t.Parallel()
	cfgFile, _ := barmanCatalog(t)
	g := &globalOptions{configFile: cfgFile}
	cfg, err := g.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, "pg1", nil)
	if err != nil {
		t.Fatal(err)
	}
	first := checktarget.New(srv)
	want, err := first.Backups(t.Context())
	if err != nil || len(want) == 0 {
		t.Fatalf("backups of the fixture catalog: %v %v", want, err)
	}
	if err := first.SaveState(); err != nil {
		t.Fatal(err)
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	again := checktarget.New(srv)
	loadProbeState([]checks.Target{again}, log)
	if logs.Len() != 0 {
		t.Errorf("a good state file was refused: %s", logs.String())
	}
	got, err := again.Backups(t.Context())
	if err != nil || len(got) != len(want) {
		t.Errorf("after loading: %d backups (%v), want %d", len(got), err, len(want))
	}

	if err := os.WriteFile(first.StatePath(), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	cold := checktarget.New(srv)
	loadProbeState([]checks.Target{cold}, log)
	if !strings.Contains(logs.String(), "server=pg1") || !strings.Contains(logs.String(), "start cold") {
		t.Errorf("unusable state not reported: %q", logs.String())
	}
	if got, err := cold.Backups(t.Context()); err != nil || len(got) != len(want) {
		t.Errorf("cold target after a refused state: %d backups (%v), want %d", len(got), err, len(want))
	}
}
