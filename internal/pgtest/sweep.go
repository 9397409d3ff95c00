package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runPrefix names per-process run roots under os.TempDir().
const runPrefix = "cellar-pgrun-"

// ownerFile inside a run root identifies the test process that owns it.
const ownerFile = "owner"

// newRunRoot creates this process's run root (0711: postgres may traverse
// it to reach its own directories but not list it) and records the owner.
func newRunRoot() (string, error) {
	dir, err := os.MkdirTemp("", runPrefix)
	if err != nil {
		return "", fmt.Errorf("run directory: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", err
	}
	tag, err := processTag(os.Getpid())
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(tag), 0o600); err != nil {
		return "", err
	}
	return dir, nil
}

// processTag is "<pid> <start time in clock ticks>", which stays unique
// across PID reuse.
func processTag(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	// The command name (field 2) may contain spaces; fields after the
	// closing parenthesis are fixed. starttime is field 22.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return strconv.Itoa(pid) + " " + f[19], nil
}

// sweepDeadRuns removes run roots whose owning test process is gone
// (killed, or timed out before its t.Cleanup ran), first killing any
// postmaster still running from them. Best effort: errors are ignored.
func (e *runEnv) sweepDeadRuns() {
	roots, _ := filepath.Glob(filepath.Join(os.TempDir(), runPrefix+"*"))
	for _, root := range roots {
		owner, err := os.ReadFile(filepath.Join(root, ownerFile))
		if err != nil {
			// Being created right now, or unreadable: only sweep when old.
			if fi, serr := os.Stat(root); serr != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		} else {
			pidText, _, _ := strings.Cut(string(owner), " ")
			pid, _ := strconv.Atoi(pidText)
			if tag, err := processTag(pid); err == nil && tag == string(owner) {
				continue // owner alive
			}
		}
		pids, _ := filepath.Glob(filepath.Join(root, "*", "data", "postmaster.pid"))
		for _, pidFile := range pids {
			if b, err := os.ReadFile(pidFile); err == nil {
				line, _, _ := strings.Cut(string(b), "\n")
				if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 1 && isPostgres(pid) {
					// SIGQUIT = immediate shutdown of the postmaster and its children.
					_ = syscall.Kill(pid, syscall.SIGQUIT)
				}
			}
		}
		_ = os.RemoveAll(root)
	}
}

// isPostgres guards against signalling a reused PID.
func isPostgres(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "postgres")
}
