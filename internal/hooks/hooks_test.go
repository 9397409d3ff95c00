package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fastRetry keeps retry tests quick; the schedule logic is the same.
var fastRetry = RetryPolicy{Break: time.Millisecond, Nap: 5 * time.Millisecond, NapAfter: 5}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger() (*slog.Logger, *syncBuf) {
	var b syncBuf
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

// writeScript writes an executable shell script and returns its path.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// readEnv parses a file written by `env > file`.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("hook did not write its environment: %v", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "BARMAN_") {
			m[k] = v
		}
	}
	return m
}

func TestScriptEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	s := Set{Kind: KindArchive, Pre: "env > " + out, Server: "pg", Configuration: "/etc/cellar.yaml", Version: "3.14.0", RetryPolicy: fastRetry}
	mtime := time.Unix(1700000000, 250_000_000)
	if err := s.RunPre(t.Context(), WALEnv("000000010000000000000003", "/in/000000010000000000000003", 16<<20, mtime, "gzip", "")); err != nil {
		t.Fatal(err)
	}
	got := readEnv(t, out)
	want := map[string]string{
		"BARMAN_PHASE":         "pre",
		"BARMAN_HOOK":          "archive_script",
		"BARMAN_RETRY":         "0",
		"BARMAN_SERVER":        "pg",
		"BARMAN_CONFIGURATION": "/etc/cellar.yaml",
		"BARMAN_VERSION":       "3.14.0",
		"BARMAN_SEGMENT":       "000000010000000000000003",
		"BARMAN_FILE":          "/in/000000010000000000000003",
		"BARMAN_SIZE":          "16777216",
		"BARMAN_TIMESTAMP":     "1700000000.25",
		"BARMAN_COMPRESSION":   "gzip",
		"BARMAN_ERROR":         "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	data, _ := os.ReadFile(out)
	if !strings.Contains(string(data), "\nPATH="+os.Getenv("PATH")+"\n") && !strings.HasPrefix(string(data), "PATH="+os.Getenv("PATH")+"\n") {
		t.Error("process environment not passed to the script")
	}
}

func TestRetryUntilSuccess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	counter := filepath.Join(dir, "count")
	// Fails (exit 1) on tries 1..7, succeeds on the 8th: crosses one nap.
	script := writeScript(t, dir, "retry.sh", fmt.Sprintf(`n=$(cat %[1]s 2>/dev/null || echo 0)
n=$((n+1)); echo $n > %[1]s
echo "try $n retry=$BARMAN_RETRY"
[ $n -ge 8 ] && exit 0
exit 1
`, counter))
	log, buf := testLogger()
	s := Set{Kind: KindBackup, PreRetry: script, RetryPolicy: fastRetry, Logger: log}
	if err := s.RunPre(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(counter)
	if strings.TrimSpace(string(data)) != "8" {
		t.Fatalf("script ran %s times, want 8", strings.TrimSpace(string(data)))
	}
	if !strings.Contains(buf.String(), "try 8 retry=1") {
		t.Errorf("script output not logged:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "hook=backup_retry_script") {
		t.Errorf("hook name not logged:\n%s", buf.String())
	}
}

func TestRetryPolicyDelay(t *testing.T) {
	t.Parallel()
	p := DefaultRetry()
	var got []time.Duration
	for f := 1; f <= 12; f++ {
		got = append(got, p.delay(f))
	}
	b, n := 3*time.Second, 60*time.Second
	want := []time.Duration{b, b, b, b, b, n, b, b, b, b, b, n}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
}

func TestPreOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		pre       string
		preRetry  string
		wantAbort bool
	}{
		{"pre script failure is ignored", "exit 3", "", false},
		{"retry success", "", "exit 0", false},
		{"abort continue", "", "exit 62", false},
		{"abort stop", "", "exit 63", true},
		{"abort stop after transient failures", "", `f=$0.n; n=$(cat $f 2>/dev/null || echo 0); echo $((n+1)) > $f; [ $n -ge 2 ] && exit 63; exit 5`, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			retry := tc.preRetry
			if strings.Contains(retry, "$0") {
				retry = writeScript(t, dir, "r.sh", retry)
			}
			s := Set{Kind: KindDelete, Pre: tc.pre, PreRetry: retry, RetryPolicy: fastRetry}
			err := s.RunPre(t.Context(), nil)
			if got := errors.Is(err, ErrAbortStop); got != tc.wantAbort {
				t.Fatalf("RunPre err = %v, want abort %v", err, tc.wantAbort)
			}
			var ae *AbortError
			if tc.wantAbort && (!errors.As(err, &ae) || ae.Hook != "delete_retry_script" || ae.Code != 63) {
				t.Fatalf("err = %#v", err)
			}
			if !tc.wantAbort && err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPostAlwaysRunsAndNeverFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	s := Set{
		Kind:      KindRecovery,
		PostRetry: fmt.Sprintf(`echo "retry $BARMAN_PHASE $BARMAN_ERROR" >> %s; exit 63`, order),
		Post:      fmt.Sprintf(`echo "post $BARMAN_HOOK" >> %s; exit 9`, order),
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // a failed (cancelled) operation still reports to its post scripts
	s.RunPost(ctx, Env{"BARMAN_ERROR": "boom"})
	data, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), "retry post boom\npost recovery_script\n"; got != want {
		t.Fatalf("post scripts ran as %q, want %q", got, want)
	}
}

func TestCancelKillsProcessGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The shell starts a background sleeper and waits: killing only the
	// shell would leave the sleeper running.
	cmd := fmt.Sprintf(`sleep 300 & echo $! > %s; wait`, pidFile)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var out Outcome
	go func() {
		var err error
		out, _, err = Script{Command: cmd, Hook: "backup_script", WaitDelay: time.Second}.Run(ctx, nil)
		done <- err
	}()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); ; {
		if data, err := os.ReadFile(pidFile); err == nil && len(bytes.TrimSpace(data)) > 0 {
			if _, err := fmt.Sscan(string(data), &pid); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("script did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || out != OutcomeCancelled {
			t.Fatalf("Run = %v, %v; want cancelled", out, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The sleeper must be gone (a zombie reaped by init counts as gone
	// once /proc no longer lists it as running).
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background child %d survived cancellation", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRetryCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	// Long breaks: only cancellation can end this.
	s := Script{Command: "exit 1", Hook: "archive_retry_script", Retry: true, RetryPolicy: RetryPolicy{Break: time.Hour, Nap: time.Hour, NapAfter: 5}}
	out, code, err := s.Run(ctx, nil)
	if !errors.Is(err, context.DeadlineExceeded) || out != OutcomeCancelled || code != 1 {
		t.Fatalf("Run = %v, %d, %v", out, code, err)
	}
}

func TestOutputRedacted(t *testing.T) {
	t.Parallel()
	log, buf := testLogger()
	s := Script{Command: "echo 'host=db password=hunter2 user=x'; echo postgres://u:s3cret@h/db >&2; exit 4 # password=inline", Hook: "backup_script", Logger: log}
	out, code, err := s.Run(t.Context(), nil)
	if err != nil || out != OutcomeFailed || code != 4 {
		t.Fatalf("Run = %v, %d, %v", out, code, err)
	}
	text := buf.String()
	for _, secret := range []string{"hunter2", "s3cret", "inline"} {
		if strings.Contains(text, secret) {
			t.Errorf("log contains %q:\n%s", secret, text)
		}
	}
	for _, want := range []string{"host=db", "stream=stdout", "stream=stderr", "exit_code=4"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"password=abc host=x", "password=*** host=x"},
		{"PGPASSWORD=abc cmd", "PGPASSWORD=*** cmd"},
		{"password='a b' x", "password=*** x"},
		{"s3://key:secret@bucket/p", "s3://key:***@bucket/p"},
		{"tool --password hunter2 x", "tool --password *** x"},
		{"nothing here", "nothing here"},
	}
	for _, tc := range tests {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNotConfigured(t *testing.T) {
	t.Parallel()
	var s Set
	if !s.Empty() {
		t.Fatal("zero Set not empty")
	}
	if err := s.RunPre(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	s.RunPost(t.Context(), nil)
}
