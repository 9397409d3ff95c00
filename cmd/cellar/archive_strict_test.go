package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/archive"
	"github.com/cellar-backup/cellar/internal/pgtest"
)

// strictEnv is a real cluster archiving through `cellar wal-archive pg`
// (as postgres) into a catalog with a second, empty server "spare".
type strictEnv struct {
	c       *pgtest.Cluster
	root    string
	bin     string
	cfgFile string
	home    string
	base    string
}

func newStrictEnv(t *testing.T) *strictEnv {
	t.Helper()
	e := &strictEnv{root: pgtest.MkdirForPostgres(t)}
	e.bin = buildCellar(t, e.root)
	e.home = filepath.Join(e.root, "home")
	e.cfgFile = filepath.Join(e.root, "config.yaml")
	if err := os.Mkdir(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	chownTree(t, e.root)
	e.c = pgtest.Start(t, pgtest.Options{ArchiveCommand: fmt.Sprintf("%s -c %s wal-archive pg %%p", e.bin, e.cfgFile)})
	cfg := fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: %q\n  spare:\n    conninfo: %q\n", e.home, e.c.ConnString(), e.c.ConnString())
	if err := os.WriteFile(e.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTree(t, e.cfgFile)
	if _, errOut, code := runAsPostgresBin(t, e.bin, "-c", e.cfgFile, "wal-archive", "--test", "spare"); code != 0 {
		t.Fatalf("wal-archive --test spare: %d %s", code, errOut)
	}
	e.c.Exec(t, "CREATE TABLE t (id serial, v text); INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 1000) g")
	bases := filepath.Join(e.root, "bases")
	if err := os.Mkdir(bases, 0o700); err != nil {
		t.Fatal(err)
	}
	chownTree(t, bases)
	e.base = filepath.Join(bases, "base")
	e.c.RunAsPostgres(t, "pg_basebackup", "-D", e.base, "-X", "none", "-c", "fast", "--no-sync")
	return e
}

func (e *strictEnv) incoming(srv string) string { return filepath.Join(e.home, srv, "incoming") }

// TestArchiveCommandStrictAndIncomingUntrusted, on a real cluster:
// archive_command refuses a segment one byte short or long (wal-archive
// and put-wal alike) so PostgreSQL keeps it; symlinks planted in
// incoming/ go to errors/ as symlinks, without their targets being read
// and without blocking the real segments behind them; SIGQUIT ends a
// client with one line and 128+3, no stack dump; the temp file of a
// killed put-wal is removed by the next run, a live one's never. The
// archived WAL then restores the cluster's data.
func TestArchiveCommandStrictAndIncomingUntrusted(t *testing.T) {
	t.Parallel()
	e := newStrictEnv(t)
	for i := range 3 {
		e.c.Exec(t, fmt.Sprintf("INSERT INTO t (v) SELECT md5((g*%d)::text) FROM generate_series(1, 3000) g", i+2))
		e.c.GenerateWAL(t, 2)
	}
	want := e.c.QueryRow(t, "SELECT count(*) || ' ' || sum(hashtext(t::text)) FROM t")
	last := e.c.SwitchWAL(t)
	e.c.WaitArchived(t, last)
	seg := filepath.Join(e.incoming("pg"), last)

	t.Run("wrong size refused", func(t *testing.T) { checkWrongSizeRefused(t, e, seg) })
	t.Run("killed senders", func(t *testing.T) { checkKilledSendersTemps(t, e, seg) })
	t.Run("SIGQUIT", func(t *testing.T) { checkSIGQUIT(t, e, seg) })
	t.Run("symlinks in incoming", func(t *testing.T) { checkSymlinksInIncoming(t, e) })
	dir := filepath.Join(filepath.Dir(e.base), "restored")
	if out, err := exec.Command("cp", "-a", e.base, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if got := recoverCluster(t, e.c, dir, fmt.Sprintf("%s -c %s wal-restore pg %%f %%p", e.bin, e.cfgFile)); got != want {
		t.Fatalf("restored cluster has %q, source has %q", got, want)
	}
}

// checkWrongSizeRefused: a real segment one byte short or long is refused
// by wal-archive (before sending) and by put-wal (receiving), with one
// line on stderr; the intact segment is accepted.
func checkWrongSizeRefused(t *testing.T, e *strictEnv, seg string) {
	good, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(seg)
	dir := filepath.Join(e.root, "pg_wal_copy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		data []byte
		ok   bool
	}{
		{"one byte short", good[:len(good)-1], false},
		{"one byte long", append(bytes.Clone(good), 0), false},
		{"intact", good, true},
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		var tarStream bytes.Buffer
		if err := archive.WritePutWALTar(&tarStream, name, path); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := runAsPostgresBin(t, e.bin, "-c", e.cfgFile, "wal-archive", "spare", path)
		checkRefusal(t, "wal-archive "+tc.what, code, errOut, tc.ok)
		code, errOut = putWALFrom(t, e, bytes.NewReader(tarStream.Bytes()))
		checkRefusal(t, "put-wal "+tc.what, code, errOut, tc.ok)
		if _, err := os.Lstat(filepath.Join(e.incoming("spare"), name)); (err == nil) != tc.ok {
			t.Fatalf("%s: stored in incoming/: %v", tc.what, err == nil)
		}
	}
}

func checkRefusal(t *testing.T, what string, code int, errOut string, ok bool) {
	t.Helper()
	if ok {
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", what, code, errOut)
		}
		return
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if code == 0 || len(lines) != 1 || !strings.Contains(errOut, "invalid WAL file") {
		t.Fatalf("%s: exit %d, stderr %q; want a one-line refusal", what, code, errOut)
	}
}

// putWALFrom runs `cellar put-wal spare` as postgres reading stdin.
func putWALFrom(t *testing.T, e *strictEnv, stdin io.Reader) (int, string) {
	t.Helper()
	cmd := exec.Command(e.bin, "-c", e.cfgFile, "put-wal", "spare")
	asPostgres(t, cmd)
	cmd.Stdin = stdin
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), errOut.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, errOut.String()
}

// startPutWAL starts `cellar put-wal spare` and feeds it the first half of
// a tar carrying seg under name, returning once its temp file exists in
// incoming/ (the sign that it is receiving).
func startPutWAL(t *testing.T, e *strictEnv, seg, name string) (*exec.Cmd, io.WriteCloser, *bytes.Buffer, string) {
	t.Helper()
	var stream bytes.Buffer
	if err := archive.WritePutWALTar(&stream, name, seg); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(e.bin, "-c", e.cfgFile, "put-wal", "spare")
	asPostgres(t, cmd)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if _, err := in.Write(stream.Bytes()[:stream.Len()/2]); err != nil {
		t.Fatal(err)
	}
	return cmd, in, &errOut, waitForTemp(t, e.incoming("spare"), name)
}

// waitForTemp waits for a hidden temp file for name to appear in dir.
func waitForTemp(t *testing.T, dir, name string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(dir)
		for _, en := range ents {
			if strings.HasPrefix(en.Name(), "."+name) {
				return filepath.Join(dir, en.Name())
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no temp file for %s appeared in %s", name, dir)
	return ""
}

// checkSIGQUIT: SIGQUIT mid-transfer (PostgreSQL's immediate shutdown)
// ends put-wal with one line and 131, not a stack dump; its temp file is
// left for the next run (checkKilledSendersTemps) to remove.
func checkSIGQUIT(t *testing.T, e *strictEnv, seg string) {
	quit, _, quitErr, quitTemp := startPutWAL(t, e, seg, "000000010000000000000070")
	if err := quit.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	err := quit.Wait()
	ee, _ := err.(*exec.ExitError)
	lines := strings.Split(strings.TrimSpace(quitErr.String()), "\n")
	if ee == nil || ee.ExitCode() != 128+int(syscall.SIGQUIT) || len(lines) != 1 || strings.Contains(quitErr.String(), "goroutine") {
		t.Fatalf("put-wal after SIGQUIT: %v, stderr (%d lines):\n%s", err, len(lines), tail(quitErr.String(), 500))
	}
	checkSweptNextRun(t, e, seg, quitTemp)
}

// checkKilledSendersTemps: the temp file of a put-wal killed with SIGKILL
// is removed by the next archive_command, while a live put-wal's temp
// file is kept (and removed by that put-wal when it fails).
func checkKilledSendersTemps(t *testing.T, e *strictEnv, seg string) {
	kill, _, _, killTemp := startPutWAL(t, e, seg, "000000010000000000000071")
	if err := kill.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	kill.Wait()
	live, liveIn, _, liveTemp := startPutWAL(t, e, seg, "000000010000000000000072")
	checkSweptNextRun(t, e, seg, killTemp)
	if _, err := os.Lstat(liveTemp); err != nil {
		t.Fatalf("temp file of a live put-wal removed: %v", err)
	}
	liveIn.Close()
	if err := live.Wait(); err == nil {
		t.Fatal("put-wal with a truncated stream succeeded")
	}
	if _, err := os.Lstat(liveTemp); !errorsIsNotExist(err) {
		t.Errorf("put-wal left its temp file after failing: %v", err)
	}
}

// checkSweptNextRun runs the next archive_command and checks that it
// removed the dead sender's temp file.
func checkSweptNextRun(t *testing.T, e *strictEnv, seg, temp string) {
	t.Helper()
	if _, errOut, code := runAsPostgresBin(t, e.bin, "-c", e.cfgFile, "wal-archive", "spare", seg); code != 0 {
		t.Fatalf("wal-archive after the kill: %d %s", code, errOut)
	}
	if _, err := os.Lstat(temp); !errorsIsNotExist(err) {
		t.Errorf("temp file %s of a killed put-wal kept (%v)", filepath.Base(temp), err)
	}
}

func errorsIsNotExist(err error) bool { return err != nil && os.IsNotExist(err) }

// checkSymlinksInIncoming: a root-owned symlink to a file outside the
// catalog and one to a file postgres cannot read, both named to sort
// before the real segments, are moved to errors/ as symlinks by
// archive-wal (run as postgres), and every real segment is archived.
func checkSymlinksInIncoming(t *testing.T, e *strictEnv) {
	secretDir := filepath.Join(e.root, "outside")
	if err := os.Mkdir(secretDir, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(secretDir, "outside")
	unreadable := filepath.Join(secretDir, "unreadable")
	for _, p := range []string{outside, unreadable} {
		if err := os.WriteFile(p, []byte("secret-"+filepath.Base(p)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(outside, 0o644); err != nil {
		t.Fatal(err)
	}
	in := e.incoming("pg")
	links := map[string]string{"00000001.history": outside, "000000010000000000000000": unreadable}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(in, name)); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := runAsPostgresBin(t, e.bin, "-c", e.cfgFile, "archive-wal", "pg")
	if code != 0 {
		t.Fatalf("archive-wal with symlinks in incoming/: exit %d\n%s\n%s", code, out, errOut)
	}
	if left, _ := os.ReadDir(in); len(left) != 0 {
		t.Fatalf("incoming/ still holds %d entries, first %s", len(left), left[0].Name())
	}
	errs, err := os.ReadDir(filepath.Join(e.home, "pg", "errors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != len(links) {
		t.Fatalf("errors/ holds %d entries, want %d", len(errs), len(links))
	}
	for _, en := range errs {
		if en.Type()&fs.ModeSymlink == 0 || !strings.HasSuffix(en.Name(), ".unknown") {
			t.Errorf("errors/%s: type %v, want the symlink itself moved as unknown", en.Name(), en.Type())
		}
	}
}
