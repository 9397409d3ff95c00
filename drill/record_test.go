package drill

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
)

func TestRecordsSaveListLoadPrune(t *testing.T) {
	t.Parallel()
	bd := t.TempDir()
	l := catalog.NewLayout("pg", bd, bd)
	if _, err := Load(l, "latest"); !errors.Is(err, ErrNoDrill) {
		t.Fatalf("no records: %v", err)
	}
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		start := t0.Add(time.Duration(i) * time.Hour)
		rec := &Record{ID: NewID(start), Server: "pg", BackupID: "b", Start: start, End: start.Add(time.Minute), Result: ResultOK}
		if err := Save(l, rec, 3); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := List(l)
	if err != nil || len(recs) != 3 || recs[0].ID != NewID(t0.Add(2*time.Hour)) {
		t.Fatalf("kept %d records (%v), want the newest 3", len(recs), err)
	}
	last, err := Load(l, "latest")
	if err != nil || last.ID != NewID(t0.Add(4*time.Hour)) || last.Duration() != time.Minute {
		t.Fatalf("latest: %+v %v", last, err)
	}
	for _, id := range []string{"../../etc/passwd", "20261124T120000.000000Z"} {
		if _, err := Load(l, id); !errors.Is(err, ErrNoDrill) {
			t.Errorf("Load(%q) = %v, want ErrNoDrill", id, err)
		}
	}
	if err := Save(l, &Record{ID: "bad/id", Result: ResultOK}, 3); err == nil {
		t.Error("saved a record with an invalid id")
	}
	if err := os.WriteFile(filepath.Join(Dir(l), last.ID+".json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(l, "latest"); err == nil {
		t.Error("loaded a damaged record")
	}
}

func TestLoadChecksNeedsExpected(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.sql"), []byte("SELECT 1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadChecks(dir); err == nil || !contains(err.Error(), "a.expected is missing") {
		t.Fatalf("got %v", err)
	}
	if _, err := loadChecks(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("a missing check directory was accepted")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(`{"id":"20261124T120000.000000Z","server":"pg","backup_id":"b","result":"OK","phases":[{"name":"restore","seconds":1.5}]}`))
	f.Add([]byte(`{"id":"x","result":"OK"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecord("fuzz", data)
		if err == nil && (!ValidID(r.ID) || (r.Result != ResultOK && r.Result != ResultFailed)) {
			t.Fatalf("accepted %+v", r)
		}
	})
}
