package checktarget

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/server"
)

var verifiedAt = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func saveVerification(t testing.TB, s *server.Server, id string, res catalog.VerifyResult, at time.Time) {
	t.Helper()
	if err := os.MkdirAll(s.Layout().BackupDirPath(id), 0o700); err != nil {
		t.Fatal(err)
	}
	v := catalog.Verification{BackupID: id, Result: res, VerifiedAt: at, Duration: time.Second, Files: 3, Bytes: 300}
	if res != catalog.VerifyOK {
		v.Error = "base/1/1259: checksum mismatch"
	}
	if err := s.Catalog().SaveVerification(v); err != nil {
		t.Fatal(err)
	}
}

// verifyCatalog has 20 DONE backups (every third one verified) and a
// FAILED one, whose record never counts.
func verifyCatalog(t *testing.T) (*server.Server, []string) {
	s := newCatalogServer(t)
	var ids []string
	for i := range 20 {
		id := fmt.Sprintf("202601%02dT000000", i+1)
		ids = append(ids, id)
		saveBackup(t, s, id, catalog.StatusDone, 2*i+2, 2*i+3, 1)
		if i%3 == 0 {
			saveVerification(t, s, id, catalog.VerifyOK, verifiedAt.Add(time.Duration(i)*time.Hour))
		}
	}
	saveBackup(t, s, "20260201T000000", catalog.StatusFailed, 50, 51, 1)
	saveVerification(t, s, "20260201T000000", catalog.VerifyFailed, verifiedAt)
	return s, ids
}

// freshVerifications is what an uncached read gives.
func freshVerifications(t *testing.T, s *server.Server) map[string]catalog.Verification {
	t.Helper()
	bs, _ := reference(t, s)
	want, err := checks.ReadVerifications(t.Context(), s.Catalog(), bs)
	if err != nil {
		t.Fatalf("reference: %v", err)
	}
	return want
}

func cachedVerifications(t *testing.T, tgt *Target) (map[string]catalog.Verification, error) {
	t.Helper()
	bs, err := tgt.Backups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return tgt.Verifications(t.Context(), bs)
}

// The cached records equal a fresh read: the newest DONE backup's at once,
// the others within restatSlices evaluations.
func TestCachedVerifications(t *testing.T) {
	t.Parallel()
	s, ids := verifyCatalog(t)
	tgt := New(s)
	check := func(step string, rounds int) {
		t.Helper()
		want := freshVerifications(t, s)
		var got map[string]catalog.Verification
		for range rounds {
			var err error
			if got, err = cachedVerifications(t, tgt); err != nil {
				t.Fatalf("%s: %v", step, err)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: cached\n%+v\nwant\n%+v", step, got, want)
		}
	}
	check("first read", 1)
	if n := len(freshVerifications(t, s)); n != 7 {
		t.Fatalf("fixture: %d verified DONE backups, want 7", n)
	}
	newest := ids[len(ids)-1]
	before, err := cachedVerifications(t, tgt)
	if err != nil {
		t.Fatal(err)
	}
	saveVerification(t, s, newest, catalog.VerifyFailed, verifiedAt.Add(48*time.Hour))
	check("newest verified: seen at once", 1)
	if _, changed := before[newest]; changed || len(before) != 7 {
		t.Fatalf("a map handed out earlier changed under its reader: %d records, newest present %v", len(before), changed)
	}
	saveVerification(t, s, newest, catalog.VerifyOK, verifiedAt.Add(49*time.Hour))
	check("newest re-verified: seen at once", 1)

	saveVerification(t, s, ids[4], catalog.VerifyUnverifiable, verifiedAt.Add(50*time.Hour))
	saveVerification(t, s, ids[3], catalog.VerifyFailed, verifiedAt.Add(50*time.Hour))
	check("older records changed: seen within a round of slices", restatSlices)

	if err := os.RemoveAll(s.Layout().BackupDirPath(ids[0])); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.Layout().MetaBackupInfoPath(ids[0])); err != nil {
		t.Fatal(err)
	}
	check("backup deleted", 1)
	if _, ok := tgt.verify.ids[ids[0]]; ok {
		t.Error("a deleted backup's record stays cached")
	}
}

// A damaged record is an error naming its file; the other records are
// still returned, and a repaired record is read again.
func TestCachedVerificationDamaged(t *testing.T) {
	t.Parallel()
	s, ids := verifyCatalog(t)
	tgt := New(s)
	newest := ids[len(ids)-1]
	path := s.Layout().VerificationPath(newest)
	if err := os.MkdirAll(s.Layout().BackupDirPath(newest), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(`{"backup_id": "20260120T000000", "result": `), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := cachedVerifications(t, tgt)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("damaged record: err %v, want one naming %s", err, path)
	}
	if len(got) != 7 {
		t.Errorf("%d records returned beside the damaged one, want 7", len(got))
	}
	res := checks.Default().Run(t.Context(), tgt, checks.Full)
	for _, r := range res {
		if r.Key == "backup_verification" && (r.Status != checks.Unknown || !strings.Contains(r.Hint, path)) {
			t.Errorf("probe on a damaged record: %s %q", r.Status, r.Hint)
		}
	}
	saveVerification(t, s, newest, catalog.VerifyFailed, verifiedAt)
	got, err = cachedVerifications(t, tgt)
	if err != nil || got[newest].Result != catalog.VerifyFailed {
		t.Fatalf("repaired record: %v %+v", err, got[newest])
	}
}

// The probe reads through the cache of a long-lived target (the
// exporter's), concurrently, and agrees with the uncached read.
func TestVerificationProbeThroughTarget(t *testing.T) {
	t.Parallel()
	s, ids := verifyCatalog(t)
	newest := ids[len(ids)-1]
	saveVerification(t, s, newest, catalog.VerifyFailed, verifiedAt)
	tgt := New(s)
	reg, err := checks.NewRegistry(mustProbe(t, "backup_verification"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([][]checks.Result, 4)
	for i := range results {
		wg.Go(func() { results[i] = reg.Run(t.Context(), tgt, checks.Full) })
	}
	wg.Wait()
	for _, res := range results {
		if len(res) != 1 || res[0].Status != checks.Critical || !strings.Contains(res[0].Hint, "backup "+newest+" failed verification") {
			t.Fatalf("probe: %+v", res)
		}
		if got := res[0].Values[checks.SeriesKey("backup_verification_failed", newest)]; got != 1 {
			t.Errorf("failed gauge of %s = %v", newest, got)
		}
		if got := res[0].Values[checks.SeriesKey("backup_verifications", "ok")]; got != 7 {
			t.Errorf("backups verified ok = %v, want 7", got)
		}
		if got := res[0].Values[checks.SeriesKey("backup_verifications", "never")]; got != 12 {
			t.Errorf("backups never verified = %v, want 12", got)
		}
	}
}

func mustProbe(t *testing.T, key string) checks.Probe {
	t.Helper()
	p, ok := checks.Default().Probe(key)
	if !ok {
		t.Fatalf("no probe %q", key)
	}
	return p
}
