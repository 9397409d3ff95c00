package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/internal/lock"
)

// Environment of the lock-holder child process (see TestMain).
const (
	envHoldLock     = "CELLAR_TEST_HOLD_LOCK"
	envIgnoreSIGINT = "CELLAR_TEST_IGNORE_SIGINT"
)

// TestMain turns the test binary into a lock-holding child when asked: a
// real process that takes a Barman-named lock the way cellar commands do,
// prints "locked", and runs until SIGINT (or ignores it, to play a stuck
// task).
func TestMain(m *testing.M) {
	if path := os.Getenv(envHoldLock); path != "" {
		os.Exit(holdLock(path, os.Getenv(envIgnoreSIGINT) != ""))
	}
	os.Exit(m.Run())
}

func holdLock(path string, ignoreSIGINT bool) int {
	sig := make(chan os.Signal, 1)
	if ignoreSIGINT {
		signal.Ignore(syscall.SIGINT)
	} else {
		signal.Notify(sig, syscall.SIGINT)
	}
	l, err := lock.TryLock(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer l.Release()
	fmt.Println("locked")
	select {
	case <-sig:
		return 0
	case <-time.After(60 * time.Second):
		return 2
	}
}

// startLockHolder runs the child and waits until it holds path.
func startLockHolder(t *testing.T, path string, ignoreSIGINT bool) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHoldLock+"="+path)
	if ignoreSIGINT {
		cmd.Env = append(cmd.Env, envIgnoreSIGINT+"=1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("lock holder did not take %s: %q %v", path, line, err)
	}
	return cmd
}

func TestListProcesses(t *testing.T) {
	t.Parallel()
	cfgFile, s := statusCatalog(t, "host=/nonexistent port=1", "", nil, nil)

	out, errOut, code := runStatusCLI(t, "-c", cfgFile, "list-processes", "pg")
	if code != 0 || strings.TrimSpace(out) != "No active processes found for server pg" {
		t.Fatalf("no processes: exit %d %q %q", code, out, errOut)
	}

	// Held: receive-wal, and a passive node's per-backup sync. Released
	// (the file stays, as Barman's do): backup. Not a task: the xlogdb lock.
	var held []*lock.Lock
	for _, task := range []string{"receive-wal", "20240301T120000-sync-backup", "backup", "xlogdb"} {
		l, err := lock.TryLock(s.Layout().LockPath(task))
		if err != nil {
			t.Fatal(err)
		}
		if task == "backup" {
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		held = append(held, l)
	}
	defer func() {
		for _, l := range held {
			_ = l.Release()
		}
	}()
	pid := os.Getpid()
	out, errOut, code = runStatusCLI(t, "-c", cfgFile, "list-processes", "all")
	want := fmt.Sprintf("Active processes for server pg:\n\tpg 20240301T120000-sync-backup %d\n\tpg receive-wal %d\n", pid, pid)
	if code != 0 || out != want {
		t.Fatalf("list-processes: exit %d %s\n got %q\nwant %q", code, errOut, out, want)
	}
	out, _, code = runStatusCLI(t, "-c", cfgFile, "-f", "json", "list-processes", "pg")
	var doc map[string][]map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc["pg"]) != 2 ||
		doc["pg"][1]["name"] != "receive-wal" || doc["pg"][1]["pid"] != float64(pid) {
		t.Fatalf("list-processes -f json: exit %d %s", code, out)
	}
}

func TestTerminateProcess(t *testing.T) {
	t.Parallel()
	cfgFile, s := statusCatalog(t, "host=/nonexistent port=1", "", nil, nil)
	fast := terminateOptions{probes: 40, interval: 50 * time.Millisecond}

	// A task that stops on SIGINT, as every cellar command does.
	child := startLockHolder(t, s.Layout().LockPath("receive-wal"), false)
	out, errOut, code := runStatusCLIWith(t, fast, "-c", cfgFile, "terminate-process", "pg", "receive-wal")
	want := fmt.Sprintf("Stopped process receive-wal(%d)\n", child.Process.Pid)
	if code != 0 || out != want {
		t.Fatalf("terminate-process: exit %d %q %q, want %q", code, out, errOut, want)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("the terminated task did not exit cleanly on SIGINT: %v", err)
	}
	if _, held, _ := lock.Holder(s.Layout().LockPath("receive-wal")); held {
		t.Fatal("receive-wal lock still held after terminate-process")
	}

	// Nothing runs the task any more.
	_, errOut, code = runStatusCLIWith(t, fast, "-c", cfgFile, "terminate-process", "pg", "receive-wal")
	if code != exitFailure || !strings.Contains(errOut, "no such process for server pg") {
		t.Fatalf("terminate of a stopped task: exit %d %q", code, errOut)
	}

	// A stuck task that ignores SIGINT: reported after the probes, not killed.
	stuck := startLockHolder(t, s.Layout().LockPath("archive-wal"), true)
	_, errOut, code = runStatusCLIWith(t, terminateOptions{probes: 3, interval: 20 * time.Millisecond}, "-c", cfgFile, "terminate-process", "pg", "archive-wal")
	if code != exitFailure || !strings.Contains(errOut, fmt.Sprintf("cannot terminate process archive-wal(%d)", stuck.Process.Pid)) {
		t.Fatalf("stuck task: exit %d %q", code, errOut)
	}
	if _, held, _ := lock.Holder(s.Layout().LockPath("archive-wal")); !held {
		t.Fatal("stuck task lost its lock")
	}
}
