package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/archive"
)

// buildCellar builds the cellar binary into dir (which must be usable by
// the postgres user when PostgreSQL runs it) and returns its path.
func buildCellar(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "cellar")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// runBin runs the cellar binary and returns stdout, stderr and the exit code.
func runBin(t *testing.T, bin string, args ...string) (stdout []byte, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", bin, err)
	}
	return o.Bytes(), e.String(), code
}

func randomFile(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSSHD runs a private sshd on 127.0.0.1 (own config, host key and
// authorized_keys in a temp dir; /etc/ssh is never read or touched) that
// accepts root with a generated key. It returns the port and the
// --ssh-command that logs in with that key.
func startSSHD(t *testing.T) (port int, sshCommand string) {
	t.Helper()
	const sshd = "/usr/sbin/sshd"
	for _, b := range []string{sshd, "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s not found (%v): install openssh-server and openssh-client (apt-get install -y openssh-server)", b, err)
		}
	}
	dir := t.TempDir()
	for _, k := range []string{"host_key", "client_key"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "client_key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd needs its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	port = freeTCPPort(t)
	cfg := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PidFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
LogLevel ERROR
`, port, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "sshd.pid"))
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfgFile)
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %d: %v\n%s", port, err, logBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	sshCommand = "ssh -i " + filepath.Join(dir, "client_key") +
		" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
	return port, sshCommand
}

// TestWALClientsOverSSH runs wal-archive and wal-restore in remote mode
// against a real sshd on 127.0.0.1, whose `cellar put-wal` / `get-wal`
// work on a catalog in a temp dir.
func TestWALClientsOverSSH(t *testing.T) {
	t.Parallel()
	port, sshCmd := startSSHD(t)
	work := t.TempDir()
	bin := buildCellar(t, work)
	home := filepath.Join(work, "home")
	cfg := filepath.Join(work, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("global:\n  barman_home: %s\nservers:\n  pg:\n    conninfo: \"host=/nonexistent port=1\"\n", home)), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := []string{"-c", cfg, "--host", "127.0.0.1", "-U", "root", "--port", strconv.Itoa(port), "--ssh-command", sshCmd, "--remote-cellar", bin}
	with := func(cmd string, extra ...string) []string {
		return append(append([]string{cmd}, remote...), extra...)
	}

	out, errOut, code := runBin(t, bin, with("wal-archive", "-t", "pg")...)
	if code != 0 || !strings.Contains(string(out), "Ready to accept WAL files for the server pg") {
		t.Fatalf("wal-archive -t: %d %q %q", code, out, errOut)
	}
	out, errOut, code = runBin(t, bin, with("wal-restore", "-t", "pg")...)
	if code != 0 || !strings.Contains(string(out), "Ready to retrieve WAL files from the server pg") {
		t.Fatalf("wal-restore -t: %d %q %q", code, out, errOut)
	}

	src := filepath.Join(work, "pg_wal")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	names := []string{"000000010000000000000001", "000000010000000000000002", "000000010000000000000003", "000000010000000000000004"}
	data := map[string][]byte{}
	for _, n := range names {
		data[n] = writeSegment(t, filepath.Join(src, n), n, 1<<20, 7000000000000000001, 1)
	}
	incoming := filepath.Join(home, "pg", "incoming")
	for i, n := range names {
		extra := []string{"pg", filepath.Join(src, n)}
		if i == 3 {
			extra = append([]string{"--zstd"}, extra...)
		}
		if _, errOut, code := runBin(t, bin, with("wal-archive", extra...)...); code != 0 {
			t.Fatalf("wal-archive %s: %d %s", n, code, errOut)
		}
	}
	for i, n := range names {
		got, err := os.ReadFile(filepath.Join(incoming, n))
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if archive.DetectCompression(got) != archive.CompressionZstd {
				t.Errorf("%s sent with --zstd is stored as %q", n, archive.DetectCompression(got))
			}
		} else if !bytes.Equal(got, data[n]) {
			t.Errorf("%s: incoming copy differs", n)
		}
	}
	// archive_command retry of a file already received: success, no error file.
	if _, errOut, code := runBin(t, bin, with("wal-archive", "pg", filepath.Join(src, names[0]))...); code != 0 {
		t.Fatalf("retry: %d %s", code, errOut)
	}
	if es, _ := os.ReadDir(filepath.Join(home, "pg", "errors")); len(es) != 0 {
		t.Fatalf("identical retry produced errors/ files: %v", es)
	}
	// Same name, different bytes: success, new copy kept in errors/.
	other := filepath.Join(work, "other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	writeSegment(t, filepath.Join(other, names[0]), names[0], 1<<20, 7000000000000000001, 2)
	if _, errOut, code := runBin(t, bin, with("wal-archive", "pg", filepath.Join(other, names[0]))...); code != 0 {
		t.Fatalf("duplicate: %d %s", code, errOut)
	}
	if es, _ := os.ReadDir(filepath.Join(home, "pg", "errors")); len(es) != 1 || !strings.HasSuffix(es[0].Name(), ".duplicate") {
		t.Fatalf("duplicate with different bytes: errors/ = %v", es)
	}

	// wal-restore: plain, gzip on the wire, and parallel prefetch.
	dest := filepath.Join(work, "restore")
	spool := filepath.Join(work, "spool")
	if err := os.Mkdir(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	restore := func(n string, extra ...string) (string, int) {
		t.Helper()
		args := with("wal-restore", append(append([]string{"--spool-dir", spool}, extra...), "pg", n, filepath.Join(dest, "RECOVERYXLOG"))...)
		out, errOut, code := runBin(t, bin, args...)
		if len(out) != 0 {
			t.Errorf("wal-restore wrote %d bytes to stdout", len(out))
		}
		return errOut, code
	}
	check := func(n string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(dest, "RECOVERYXLOG"))
		if err != nil || !bytes.Equal(got, data[n]) {
			t.Fatalf("%s: restored copy differs (%v)", n, err)
		}
	}
	for _, tc := range []struct {
		name  string
		flags []string
	}{{"plain", nil}, {"gzip", []string{"-z"}}, {"zstd", []string{"--zstd"}}, {"keep", []string{"--keep-compression"}}} {
		n := names[3] // stored zstd-compressed
		if errOut, code := restore(n, tc.flags...); code != 0 {
			t.Fatalf("%s: wal-restore %s: %d %s", tc.name, n, code, errOut)
		}
		check(n)
	}
	if errOut, code := restore(names[0], "-p", "3"); code != 0 {
		t.Fatalf("wal-restore -p 3: %d %s", code, errOut)
	}
	check(names[0])
	for _, n := range names[1:3] {
		got, err := os.ReadFile(filepath.Join(spool, n))
		if err != nil || !bytes.Equal(got, data[n]) {
			t.Fatalf("%s not prefetched into the spool correctly: %v", n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(spool, names[3])); err == nil {
		t.Fatalf("-p 3 prefetched more than 2 segments")
	}
	// Served from the spool: the spool copy moves into place.
	if errOut, code := restore(names[1], "-p", "3"); code != 0 {
		t.Fatalf("wal-restore from spool: %d %s", code, errOut)
	}
	check(names[1])
	if _, err := os.Stat(filepath.Join(spool, names[1])); err == nil {
		t.Fatal("spooled file still in the spool after being served")
	}
	ents, _ := os.ReadDir(spool)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temp file left in spool: %s", e.Name())
		}
	}

	// Exit codes PostgreSQL and operators rely on.
	if errOut, code := restore("000000010000000000000009"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("missing WAL: exit %d %q, want 1", code, errOut)
	}
	if _, code := restore("../../etc/passwd"); code != 3 {
		t.Fatalf("bad name: exit %d, want 3", code)
	}
	if _, _, code := runBin(t, bin, with("wal-restore", "pg", names[0], dest)...); code != 3 {
		t.Fatalf("destination is a directory: exit %d, want 3", code)
	}
	closed := freeTCPPort(t)
	down := []string{"--host", "127.0.0.1", "-U", "root", "--port", strconv.Itoa(closed), "--ssh-command", sshCmd, "--remote-cellar", bin, "pg"}
	if _, errOut, code := runBin(t, bin, append([]string{"wal-restore"}, append(down, names[0], filepath.Join(dest, "x"))...)...); code != 2 {
		t.Fatalf("ssh failure: wal-restore exit %d (%s), want 2", code, errOut)
	}
	if _, errOut, code := runBin(t, bin, append([]string{"wal-archive"}, append(down, filepath.Join(src, names[0]))...)...); code != 3 {
		t.Fatalf("ssh failure: wal-archive exit %d (%s), want 3", code, errOut)
	}
	if _, _, code := runBin(t, bin, with("wal-archive", "pg", src)...); code != 2 {
		t.Fatalf("WAL_PATH is a directory: wal-archive exit %d, want 2", code)
	}
	if _, _, code := runBin(t, bin, with("wal-archive", "pg", filepath.Join(work, "nonexistent", names[0]))...); code != 2 {
		t.Fatalf("missing WAL_PATH: wal-archive exit %d, want 2", code)
	}
}
