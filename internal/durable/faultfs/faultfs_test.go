package faultfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFailsNthCall(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for n := 0; n <= 3; n++ {
		os.Remove(a)
		os.Remove(b)
		f := New(n)
		err1 := f.WriteFile(a, []byte("x"), 0o600)
		err2 := f.Rename(a, b)
		err3 := f.Remove(b)
		errs := []error{err1, err2, err3}
		for i, err := range errs {
			if want := i+1 == n; errors.Is(err, ErrInjected) != want {
				t.Fatalf("failAt=%d call %d: err=%v", n, i+1, err)
			}
		}
		if len(f.Calls()) != 3 || f.Failed() != (n > 0) {
			t.Fatalf("failAt=%d: calls=%v failed=%v", n, f.Calls(), f.Failed())
		}
	}
}
