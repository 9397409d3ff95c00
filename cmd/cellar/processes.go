package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/internal/lock"
	"github.com/cellar-backup/cellar/server"
)

// processTasks are the long-running tasks whose Barman-named locks
// list-processes reports and terminate-process can stop (BARMAN-FACTS
// §10). Per-backup sync locks (.<srv>-<id>-sync-backup.lock) are matched
// by suffix.
func processTasks() []string {
	return []string{"archive-wal", "backup", "cron", "receive-wal", "sync-cron", "sync-wal"}
}

const syncBackupSuffix = "-sync-backup"

// serverProcess is a task whose lock is held by a live process.
type serverProcess struct {
	Task string `json:"name"`
	PID  int    `json:"pid"`
	lock string
}

// serverProcesses reads the lock directory of s: every known task lock
// that is currently held, sorted by task name.
func serverProcesses(s *server.Server) ([]serverProcess, error) {
	l := s.Layout()
	tasks := processTasks()
	entries, err := os.ReadDir(l.LockDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("server %s: reading lock directory %s: %w", s.Name(), l.LockDir, err)
	}
	prefix := lock.FileName(s.Name(), "")
	prefix = strings.TrimSuffix(prefix, ".lock")
	for _, e := range entries {
		task, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		task, ok = strings.CutSuffix(task, ".lock")
		if ok && strings.HasSuffix(task, syncBackupSuffix) && len(task) > len(syncBackupSuffix) {
			tasks = append(tasks, task)
		}
	}
	var out []serverProcess
	var errs []error
	for _, task := range tasks {
		path := l.LockPath(task)
		pid, held, err := lock.Holder(path)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("server %s: lock %s: %w", s.Name(), path, err))
			}
			continue
		}
		if held {
			out = append(out, serverProcess{Task: task, PID: pid, lock: path})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Task < out[j].Task })
	return out, errors.Join(errs...)
}

// newListProcessesCommand lists the Cellar (or Barman) processes working on
// servers, from the PIDs their locks hold.
func newListProcessesCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list-processes SERVER|all [SERVER...]",
		Short: "List the processes holding a server's task locks (receive-wal, backup, archive-wal, ...)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runListProcesses(cmd.Context(), g, args)
		},
	}
}

func runListProcesses(_ context.Context, g *globalOptions, args []string) error {
	srvs, err := g.servers(args)
	if err != nil {
		return err
	}
	doc := map[string][]serverProcess{}
	var errs []error
	for _, s := range srvs {
		procs, err := serverProcesses(s)
		if err != nil {
			errs = append(errs, err)
		}
		if procs == nil {
			procs = []serverProcess{}
		}
		doc[s.Name()] = procs
		if g.json() {
			continue
		}
		if len(procs) == 0 {
			fmt.Fprintf(g.out, "No active processes found for server %s\n", s.Name())
			continue
		}
		fmt.Fprintf(g.out, "Active processes for server %s:\n", s.Name())
		for _, p := range procs {
			pid := "unknown"
			if p.PID > 0 {
				pid = fmt.Sprint(p.PID)
			}
			fmt.Fprintf(g.out, "\t%s %s %s\n", s.Name(), p.Task, pid)
		}
	}
	if g.json() {
		if err := writeJSON(g.out, doc); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// terminateOptions are Barman's kill policy: SIGINT, then probes until
// the process has gone.
type terminateOptions struct {
	probes   int
	interval time.Duration
}

func defaultTerminate() terminateOptions { return terminateOptions{probes: 10, interval: time.Second} }

// newTerminateProcessCommand stops the process that holds a task lock.
func newTerminateProcessCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "terminate-process SERVER TASK",
		Short: "Stop the process running a task of a server (SIGINT, then wait up to 10 s)",
		Long: "TASK is one of " + strings.Join(processTasks(), ", ") + " or <backup id>" + syncBackupSuffix + ".\n" +
			"The process is found through the PID written in the task's lock file.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTerminateProcess(cmd.Context(), g, defaultTerminate(), args)
		},
	}
}

func runTerminateProcess(ctx context.Context, g *globalOptions, opts terminateOptions, args []string) error {
	s, err := g.server(args[0])
	if err != nil {
		return err
	}
	task := args[1]
	procs, err := serverProcesses(s)
	if err != nil {
		return err
	}
	var target *serverProcess
	for i := range procs {
		if procs[i].Task == task {
			target = &procs[i]
		}
	}
	if target == nil {
		return withCode(exitFailure, fmt.Errorf("termination of %s failed: no such process for server %s", task, s.Name()))
	}
	if target.PID <= 0 {
		return fmt.Errorf("termination of %s failed: lock %s names no process", task, target.lock)
	}
	stopped, err := terminate(ctx, *target, opts)
	if err != nil {
		return fmt.Errorf("server %s: terminating %s (pid %d): %w", s.Name(), task, target.PID, err)
	}
	if !stopped {
		return fmt.Errorf("cannot terminate process %s(%d) of server %s: still running after %d checks", task, target.PID, s.Name(), opts.probes)
	}
	if g.json() {
		return writeJSON(g.out, map[string]any{s.Name(): map[string]any{"name": task, "pid": target.PID, "stopped": true}})
	}
	fmt.Fprintf(g.out, "Stopped process %s(%d)\n", task, target.PID)
	return nil
}

// terminate sends SIGINT and probes until the process has released the
// lock (or exited). Watching the lock, not only the PID, means a PID reused
// by an unrelated process is never mistaken for the task.
func terminate(ctx context.Context, p serverProcess, opts terminateOptions) (bool, error) {
	proc, err := os.FindProcess(p.PID)
	if err != nil {
		return false, err
	}
	if err := proc.Signal(syscall.SIGINT); err != nil {
		if errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH) {
			return true, nil
		}
		return false, err
	}
	gone := func() bool {
		if pid, held, err := lock.Holder(p.lock); err == nil && (!held || pid != p.PID) {
			return true
		}
		return errors.Is(syscall.Kill(p.PID, 0), syscall.ESRCH)
	}
	t := time.NewTicker(opts.interval)
	defer t.Stop()
	for range opts.probes {
		if gone() {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
	return gone(), nil
}
