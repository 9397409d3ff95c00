package walclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cellar-backup/cellar/wal"
)

func TestRemoteArgv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		r    Remote
		args []string
		want []string
	}{
		{"defaults", Remote{Host: "backup"}, []string{"put-wal", "pg"},
			[]string{"ssh", "-q", "-T", "backup", "cellar put-wal pg"}},
		{"all", Remote{SSHCommand: "ssh -i /k -o BatchMode=yes", Host: "b.example", User: "cellar", Port: 2222, Program: "/opt/cellar", Config: "/etc/my cellar.yaml"},
			[]string{"get-wal", "--peek", "4", "pg", "000000010000000000000001"},
			[]string{"ssh", "-i", "/k", "-o", "BatchMode=yes", "-p", "2222", "-q", "-T", "cellar@b.example",
				"/opt/cellar '--config=/etc/my cellar.yaml' get-wal --peek 4 pg 000000010000000000000001"}},
		{"quoted server", Remote{Host: "h"}, []string{"get-wal", "it's; rm -rf /"},
			[]string{"ssh", "-q", "-T", "h", `cellar get-wal 'it'\''s; rm -rf /'`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.r.Argv(tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestRemoteValidate(t *testing.T) {
	t.Parallel()
	for _, r := range []Remote{
		{},
		{Host: "-oProxyCommand=evil"},
		{Host: "a b"},
		{Host: "u@h"},
		{Host: "h", User: "-l"},
		{Host: "h", Port: 70000},
		{Host: "h", SSHCommand: "   "},
	} {
		if _, err := r.Argv("x"); !errors.Is(err, ErrBadRemote) {
			t.Errorf("%+v: err %v, want ErrBadRemote", r, err)
		}
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	tests := []struct{ status, archive, restore int }{
		{0, 0, 0}, {1, 1, 1}, {3, 3, 3}, {SSHFailure, ArchiveSSHFailed, RestoreSSHFailed},
	}
	for _, tt := range tests {
		if got := ArchiveExitCode(tt.status); got != tt.archive {
			t.Errorf("ArchiveExitCode(%d) = %d, want %d", tt.status, got, tt.archive)
		}
		if got := RestoreExitCode(tt.status); got != tt.restore {
			t.Errorf("RestoreExitCode(%d) = %d, want %d", tt.status, got, tt.restore)
		}
	}
}

// FuzzShellQuote: whatever the word, the shell gives it back unchanged.
func FuzzShellQuote(f *testing.F) {
	for _, s := range []string{"", "plain", "it's", "a b", "$(id)", "`x`", "\\", "'''", "\n", "-c", "%p"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			return // cannot be an argv word
		}
		out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(s)).Output()
		if err != nil {
			t.Fatalf("sh: %v for %q", err, ShellQuote(s))
		}
		if string(out) != s {
			t.Fatalf("quoted %q came back as %q", s, out)
		}
	})
}

func TestSpoolTakeAndFill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sp := Spool{Dir: filepath.Join(t.TempDir(), "spool")}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	names := []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003", "00000002.history"}
	var calls atomic.Int32
	fetch := func(_ context.Context, name string, w io.Writer) error {
		calls.Add(1)
		if name == names[2] {
			_, _ = w.Write([]byte("half"))
			return errors.New("connection lost")
		}
		_, err := fmt.Fprintf(w, "content of %s", name)
		return err
	}
	if ok, err := sp.Take(names[0], dest, nil); ok || err != nil {
		t.Fatalf("Take on an empty (missing) spool: %v %v", ok, err)
	}
	err := sp.Fill(ctx, append(slices.Clone(names), "../x"), 2, fetch)
	var ne *wal.NameError
	if err == nil || !strings.Contains(err.Error(), "connection lost") || !errors.As(err, &ne) {
		t.Fatalf("Fill error %v: want the failed fetch and the bad name", err)
	}
	if calls.Load() != 4 {
		t.Fatalf("%d fetches, want 4", calls.Load())
	}
	ents, _ := os.ReadDir(sp.Dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if want := []string{names[0], names[1], names[3]}; !slices.Equal(got, want) {
		t.Fatalf("spool holds %v, want %v (no partial or temp files)", got, want)
	}
	// Already spooled names are not fetched again.
	calls.Store(0)
	_ = sp.Fill(ctx, names[:2], 2, fetch)
	if calls.Load() != 0 {
		t.Fatalf("spooled files fetched again (%d)", calls.Load())
	}
	ok, err := sp.Take(names[1], dest, nil)
	if !ok || err != nil {
		t.Fatalf("Take: %v %v", ok, err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "content of "+names[1] {
		t.Fatalf("dest has %q", b)
	}
	if sp.Has(names[1]) {
		t.Fatal("taken file still spooled")
	}
	if _, err := sp.Take("../../etc/passwd", dest, nil); !errors.As(err, &ne) {
		t.Fatalf("Take with a bad name: %v", err)
	}
}

func TestWriteDestLeavesNothingOnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dest := filepath.Join(dir, "RECOVERYXLOG")
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := WriteDest(context.Background(), dest, func(w io.Writer) error {
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1000))
		return errors.New("boom")
	})
	if err == nil {
		t.Fatal("no error")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir has %d entries after a failed write", len(ents))
	}
	if b, _ := os.ReadFile(dest); string(b) != "old" {
		t.Fatalf("dest changed to %q", b)
	}
	n, err := WriteDest(context.Background(), dest, func(w io.Writer) error {
		_, err := w.Write([]byte("new"))
		return err
	})
	if err != nil || n != 3 {
		t.Fatal(n, err)
	}
	if b, _ := os.ReadFile(dest); string(b) != "new" {
		t.Fatalf("dest is %q", b)
	}
}

func TestWriteRestored(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		fill    func(w io.Writer) error
		wantErr bool
	}{
		{"fill fails after writing", context.Background(), func(w io.Writer) error {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 1000))
			return errors.New("boom")
		}, true},
		{"context cancelled", cancelled, func(w io.Writer) error {
			_, err := w.Write([]byte("partial"))
			return err
		}, true},
		{"ok", context.Background(), func(w io.Writer) error {
			_, err := w.Write([]byte("new"))
			return err
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dest := filepath.Join(dir, "RECOVERYXLOG")
			if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := WriteRestored(tc.ctx, dest, tc.fill)
			if (err != nil) != tc.wantErr {
				t.Fatalf("WriteRestored: n %d err %v, want error %v", n, err, tc.wantErr)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 || ents[0].Name() != "RECOVERYXLOG" {
				t.Fatalf("dir holds %v, want only RECOVERYXLOG (no temp file)", ents)
			}
			want := "old"
			if !tc.wantErr {
				want = "new"
				if n != 3 {
					t.Errorf("n = %d, want 3", n)
				}
			}
			if b, _ := os.ReadFile(dest); string(b) != want {
				t.Fatalf("dest is %q, want %q", b, want)
			}
		})
	}
}

// TestWriteRestoredKernelCopy: fill gets the *os.File itself, so io.Copy
// from another file can use copy_file_range; the bytes must arrive whole.
func TestWriteRestoredKernelCopy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "dest")
	n, err := WriteRestored(context.Background(), dest, func(w io.Writer) error {
		if _, ok := w.(*os.File); !ok {
			t.Errorf("fill got %T, want *os.File", w)
		}
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	})
	if err != nil || n != int64(len(data)) {
		t.Fatalf("n %d err %v", n, err)
	}
	if b, _ := os.ReadFile(dest); !bytes.Equal(b, data) {
		t.Fatal("dest differs from src")
	}
	if fi, err := os.Stat(dest); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("dest mode: %v %v", fi.Mode(), err)
	}
}
