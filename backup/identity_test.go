package backup

import (
	"errors"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/postgres"
)

func TestEnsureIdentity(t *testing.T) {
	l := catalog.NewLayout("pg", t.TempDir(), t.TempDir())
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	st := &postgres.Status{SystemID: "7311211231231231231", ServerVersion: 150018}
	if err := ensureIdentity(l, st); err != nil {
		t.Fatalf("first backup: %v", err)
	}
	id, err := catalog.ReadIdentity(l)
	if err != nil || id.SystemID != st.SystemID || id.Version != "15" {
		t.Fatalf("identity.json = %+v, %v", id, err)
	}
	if err := ensureIdentity(l, st); err != nil {
		t.Fatalf("same cluster again: %v", err)
	}
	other := &postgres.Status{SystemID: "7400000000000000001", ServerVersion: 150018}
	if err := ensureIdentity(l, other); !errors.Is(err, ErrSystemIDMismatch) {
		t.Fatalf("another cluster: %v, want ErrSystemIDMismatch", err)
	}
	if id, _ := catalog.ReadIdentity(l); id.SystemID != st.SystemID {
		t.Fatalf("identity.json overwritten: %+v", id)
	}
}
