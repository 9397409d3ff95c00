package checktarget

import (
	"errors"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/catalog"
)

// A restarted exporter (a new Target loading the saved state) answers
// with the same records without parsing any unchanged one.
func TestVerifyStateSaveLoad(t *testing.T) {
	t.Parallel()
	s, ids := verifyCatalog(t)
	warm := New(s)
	if _, err := cachedVerifications(t, warm); err != nil {
		t.Fatal(err)
	}
	if err := warm.SaveState(); err != nil {
		t.Fatal(err)
	}
	load := func() *Target {
		t.Helper()
		tg := New(s)
		if err := tg.LoadState(); err != nil {
			t.Fatal(err)
		}
		return tg
	}
	cold := load()
	got, err := cachedVerifications(t, cold)
	if err != nil {
		t.Fatal(err)
	}
	if want := freshVerifications(t, s); !reflect.DeepEqual(got, want) || cold.verify.reads != 0 {
		t.Fatalf("after load: %d records parsed, cached\n%+v\nwant\n%+v", cold.verify.reads, got, want)
	}

	newest := ids[len(ids)-1]
	saveVerification(t, s, newest, catalog.VerifyFailed, verifiedAt.Add(72*time.Hour))
	cold = load()
	got, err = cachedVerifications(t, cold)
	if err != nil {
		t.Fatal(err)
	}
	if want := freshVerifications(t, s); !reflect.DeepEqual(got, want) || cold.verify.reads != 1 {
		t.Fatalf("changed record after load: %d records parsed, cached\n%+v\nwant\n%+v", cold.verify.reads, got, want)
	}
	// Saving again only when something changed.
	if err := cold.SaveState(); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(cold.StatePath())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cachedVerifications(t, cold); err != nil {
		t.Fatal(err)
	}
	if err := cold.SaveState(); err != nil {
		t.Fatal(err)
	}
	if after, err := os.Stat(cold.StatePath()); err != nil || !os.SameFile(before, after) {
		t.Errorf("state rewritten although nothing changed (%v)", err)
	}
}

// FuzzLoadStateVerifications mutates a state holding verification
// records. Properties: decoding never panics, refuses with ErrBadState,
// and accepts only valid, sorted ids with known results.
func FuzzLoadStateVerifications(f *testing.F) {
	s := newCatalogServer(f)
	saveBackup(f, s, "20260101T000000", catalog.StatusDone, 2, 3, 1)
	saveBackup(f, s, "20260102T000000", catalog.StatusDone, 4, 5, 1)
	saveVerification(f, s, "20260101T000000", catalog.VerifyOK, verifiedAt)
	saveVerification(f, s, "20260102T000000", catalog.VerifyFailed, verifiedAt)
	tg := New(s)
	bs, err := tg.Backups(f.Context())
	if err != nil {
		f.Fatal(err)
	}
	if _, err := tg.Verifications(f.Context(), bs); err != nil {
		f.Fatal(err)
	}
	if err := tg.SaveState(); err != nil {
		f.Fatal(err)
	}
	seed, err := os.ReadFile(tg.StatePath())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add(seed[:len(seed)-5])
	l := s.Layout()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < stateHeader+stateTrailer {
			return
		}
		st, err := decodeState(reseal(data), l)
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("decode error %v does not match ErrBadState", err)
			}
			return
		}
		for id, fid := range st.verifyIDs {
			v, ok := st.verifyRecs[id]
			if !catalog.IsBackupID(id) || ok != (fid != fileID{}) {
				t.Fatalf("accepted bad entry %q %+v %+v", id, fid, v)
			}
			if ok && (v.BackupID != id || (v.Result != catalog.VerifyOK && v.Result != catalog.VerifyFailed && v.Result != catalog.VerifyUnverifiable)) {
				t.Fatalf("accepted bad record %+v", v)
			}
		}
	})
}
