package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestGetWALAndWALRestoreLeaveNothingOnFailure: a stored segment that
// fails half way through decompression makes get-wal -o and wal-restore
// fail with no file under the final name and no temp file left, while an
// intact one is restored whole.
func TestGetWALAndWALRestoreLeaveNothingOnFailure(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: \"host=/nonexistent port=1\"\n", home)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(home, "pg", "wals", "0000000100000000")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	const good, bad = "000000010000000000000001", "000000010000000000000002"
	plain := testSegment(t, good, 1<<20, 7000000000000000001, 1)
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	whole := enc.EncodeAll(plain, nil)
	if err := os.WriteFile(filepath.Join(walDir, good), whole, 0o600); err != nil {
		t.Fatal(err)
	}
	// Truncated frame: the decoder fails after the first blocks.
	if err := os.WriteFile(filepath.Join(walDir, bad), whole[:len(whole)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}

	onlyEntries := func(t *testing.T, dir string, want ...string) {
		t.Helper()
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s holds %v, want %v", dir, got, want)
		}
	}
	for _, tc := range []struct {
		name     string
		wal      string
		wantCode int
	}{
		{"intact", good, 0},
		{"truncated", bad, -1},
	} {
		t.Run("get-wal -o "+tc.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			_, errOut, code := runCLI(t, "-c", cfgFile, "get-wal", "pg", tc.wal, "-o", out)
			if (code == 0) != (tc.wantCode == 0) {
				t.Fatalf("exit %d (%s)", code, errOut)
			}
			if tc.wantCode != 0 {
				onlyEntries(t, out)
				return
			}
			onlyEntries(t, out, tc.wal)
			if b, _ := os.ReadFile(filepath.Join(out, tc.wal)); !bytes.Equal(b, plain) {
				t.Fatal("restored bytes differ")
			}
		})
		t.Run("wal-restore "+tc.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			dest := filepath.Join(out, "RECOVERYXLOG")
			_, errOut, code := runCLI(t, "-c", cfgFile, "wal-restore", "--spool-dir", filepath.Join(out, "spool"), "pg", tc.wal, dest)
			if tc.wantCode != 0 {
				if code != 2 {
					t.Fatalf("exit %d, want 2 (could not restore): %s", code, errOut)
				}
				onlyEntries(t, out)
				return
			}
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			onlyEntries(t, out, "RECOVERYXLOG")
			if b, _ := os.ReadFile(dest); !bytes.Equal(b, plain) {
				t.Fatal("restored bytes differ")
			}
		})
	}
}
