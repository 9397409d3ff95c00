package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

func loadConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{File: p})
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return cfg
}

func TestServerAgainstRealPostgres(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	home := t.TempDir()
	cfg := loadConfig(t, fmt.Sprintf(`
global:
  barman_home: %s
servers:
  pg:
    conninfo: %q
    streaming_conninfo: %q
`, home, c.ConnString(), c.ConnString()))
	s, err := New(cfg, "pg", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := c.SystemID(t)
	if st.SystemID != want || st.WALLevel != "replica" || st.ServerVersion < 150000 {
		t.Fatalf("status: sysid %s (want %s) wal_level %s version %d", st.SystemID, want, st.WALLevel, st.ServerVersion)
	}

	rc, err := s.ConnectReplication(ctx, "cellar_test")
	if err != nil {
		t.Fatal(err)
	}
	si, err := rc.IdentifySystem(ctx)
	rc.Close(ctx)
	if err != nil || si.SystemID != want || si.Timeline != 1 {
		t.Fatalf("IDENTIFY_SYSTEM = %+v, %v; want sysid %s tli 1", si, err, want)
	}

	if id, err := s.ReadIdentity(); err != nil || id != nil {
		t.Fatalf("identity before write: %v %v", id, err)
	}
	id, err := s.WriteIdentity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.SystemID != want || id.Version != "15" {
		t.Fatalf("identity %+v", id)
	}
	raw, err := os.ReadFile(s.IdentityPath())
	if err != nil {
		t.Fatal(err)
	}
	wantRaw := fmt.Sprintf("{\n    \"systemid\": \"%s\",\n    \"version\": \"15\"\n}\n", want)
	if string(raw) != wantRaw {
		t.Fatalf("identity.json = %q, want %q", raw, wantRaw)
	}
	for _, d := range []string{"base", "wals", "incoming", "streaming", "errors", "meta"} {
		fi, err := os.Stat(filepath.Join(home, "pg", d))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("directory %s: %v %v", d, fi, err)
		}
	}

	// A different cluster behind the same catalog must be refused.
	other := pgtest.Start(t, pgtest.Options{Unique: true})
	cfg2 := loadConfig(t, fmt.Sprintf(`
global:
  barman_home: %s
servers:
  pg:
    conninfo: %q
`, home, other.ConnString()))
	s2, _ := New(cfg2, "pg", nil)
	if _, err := s2.WriteIdentity(ctx); !errors.Is(err, ErrSystemIDMismatch) {
		t.Fatalf("identity with another cluster: %v, want ErrSystemIDMismatch", err)
	}
	if sid, err := s2.SystemID(ctx); err != nil || sid == want {
		t.Fatalf("other cluster sysid %s %v", sid, err)
	}
}

func TestUnreachableServer(t *testing.T) {
	cfg := loadConfig(t, fmt.Sprintf(`
global:
  barman_home: %s
servers:
  down:
    conninfo: "host=%s port=1 user=postgres password=hunter2 connect_timeout=2"
`, t.TempDir(), t.TempDir()))
	s, err := New(cfg, "down", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Status(t.Context())
	if err == nil {
		t.Fatal("status of an unreachable server succeeded")
	}
	if msg := err.Error(); !containsAll(msg, "down") || containsAll(msg, "hunter2") {
		t.Fatalf("error must name the server and hide the password: %s", msg)
	}
	rs := s.RemoteStatus(t.Context())
	if _, ok := rs["connection_error"]; !ok {
		t.Fatalf("RemoteStatus without connection_error: %v", rs)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// barman_compatibility decides the format of a new, empty catalog: with
// 3.4, backup.info is written under base/<id>/ (Barman 3.4 knows no meta/).
func TestBarmanCompatibilityNewCatalog(t *testing.T) {
	for _, tc := range []struct {
		compat   string
		wantMeta bool
	}{{"3.4", false}, {"3.17", true}, {"", true}} {
		home := t.TempDir()
		cfg := loadConfig(t, fmt.Sprintf("global:\n  barman_home: %s\n  barman_compatibility: %q\nservers:\n  pg:\n    conninfo: host=nowhere\n", home, tc.compat))
		s, err := New(cfg, "pg", nil)
		if err != nil {
			t.Fatal(err)
		}
		l := s.Layout()
		p := l.BackupInfoPath("20261203T101010")
		if isMeta := strings.HasPrefix(p, l.MetaDir+string(os.PathSeparator)); isMeta != tc.wantMeta {
			t.Errorf("barman_compatibility %q: backup.info at %s, want under meta/ = %v", tc.compat, p, tc.wantMeta)
		}
	}
}
