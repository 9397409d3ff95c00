package catalog

import (
	"os"
	"testing"
	"time"
)

func TestVerificationRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l := NewLayout("pg", dir, dir)
	if err := l.MakeDirs(); err != nil {
		t.Fatal(err)
	}
	c := Open(l)
	id := "20261203T101010"
	if err := os.MkdirAll(l.BackupDirPath(id), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Verification(id); ok || err != nil {
		t.Fatalf("before save: ok=%v err=%v", ok, err)
	}
	want := Verification{BackupID: id, Result: VerifyFailed, VerifiedAt: time.Unix(1700000000, 0).UTC(), Duration: time.Second, Files: 3, Bytes: 10, Error: "base/5/1: checksum mismatch"}
	if err := c.SaveVerification(want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.Verification(id)
	if err != nil || !ok || got != want {
		t.Fatalf("got %+v ok=%v err=%v", got, ok, err)
	}
	if err := c.SaveVerification(Verification{BackupID: id, Result: "maybe"}); err == nil {
		t.Fatal("invalid result accepted")
	}
	if err := os.WriteFile(l.VerificationPath(id), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Verification(id); err == nil {
		t.Fatal("broken record accepted")
	}
}
