package hooks

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Set is the four scripts of one hook kind, plus what every run shares.
// The zero Set runs nothing.
type Set struct {
	// Kind is archive, backup, delete, recovery or wal_delete (Kind*).
	Kind string
	// The configured commands ("" = not configured).
	Pre, PreRetry, Post, PostRetry string
	// Server and Configuration become BARMAN_SERVER and
	// BARMAN_CONFIGURATION; Version becomes BARMAN_VERSION.
	Server        string
	Configuration string
	Version       string
	// RetryPolicy spaces retry-script tries (zero = DefaultRetry).
	RetryPolicy RetryPolicy
	Logger      *slog.Logger
}

// Empty reports whether no script is configured.
func (s Set) Empty() bool {
	return s.Pre == "" && s.PreRetry == "" && s.Post == "" && s.PostRetry == ""
}

func (s Set) script(cmd string, phase Phase, retry bool) Script {
	hook := s.Kind + "_script"
	if retry {
		hook = s.Kind + "_retry_script"
	}
	l := s.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return Script{Command: cmd, Hook: hook, Retry: retry, Phase: phase, RetryPolicy: s.RetryPolicy, Logger: l}
}

func (s Set) env(env Env) Env {
	out := Env{
		"BARMAN_SERVER":        s.Server,
		"BARMAN_CONFIGURATION": s.Configuration,
		"BARMAN_VERSION":       s.Version,
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// RunPre runs the pre script then the pre retry script. A failing pre
// script is logged and ignored, as is a retry script's ABORT_CONTINUE. A
// retry script's ABORT_STOP returns an *AbortError matching ErrAbortStop:
// the caller must then skip the operation. The only other error is ctx's.
func (s Set) RunPre(ctx context.Context, env Env) error {
	if s.Empty() {
		return ctx.Err()
	}
	e := s.env(env)
	if _, _, err := s.script(s.Pre, PhasePre, false).Run(ctx, e); err != nil {
		return err
	}
	sc := s.script(s.PreRetry, PhasePre, true)
	out, code, err := sc.Run(ctx, e)
	if err != nil {
		return err
	}
	switch out {
	case OutcomeAbortContinue:
		sc.logger().Warn("pre retry hook script aborted with ABORT_CONTINUE; the operation goes on", "exit_code", code)
	case OutcomeAbortStop:
		sc.logger().Error("pre retry hook script aborted with ABORT_STOP; the operation is stopped", "exit_code", code)
		return &AbortError{Hook: sc.Hook, Code: code}
	}
	return nil
}

// RunPost runs the post retry script then the post script. Nothing they do
// fails the operation: outcomes are only logged (ABORT_STOP behaves like
// ABORT_CONTINUE after the fact). The scripts still run when ctx is already
// cancelled, so that they learn about a failed operation; ctx's values are
// kept, its cancellation is not.
func (s Set) RunPost(ctx context.Context, env Env) {
	if s.Empty() {
		return
	}
	ctx = context.WithoutCancel(ctx)
	e := s.env(env)
	sc := s.script(s.PostRetry, PhasePost, true)
	if out, code, _ := sc.Run(ctx, e); out == OutcomeAbortContinue || out == OutcomeAbortStop {
		sc.logger().Warn("post retry hook script aborted; nothing left to stop", "exit_code", code)
	}
	_, _, _ = s.script(s.Post, PhasePost, false).Run(ctx, e)
}

// WALEnv is the environment of archive and wal_delete scripts. file is the
// WAL's full path (the source in incoming/ or streaming/ when archiving,
// the stored copy when deleting), size its size in bytes, mtime its
// modification time, compression "" for plain. errText becomes
// BARMAN_ERROR ("" = no error).
func WALEnv(segment, file string, size int64, mtime time.Time, compression, errText string) Env {
	return Env{
		"BARMAN_SEGMENT":     segment,
		"BARMAN_FILE":        file,
		"BARMAN_SIZE":        strconv.FormatInt(size, 10),
		"BARMAN_TIMESTAMP":   Timestamp(mtime),
		"BARMAN_COMPRESSION": compression,
		"BARMAN_ERROR":       errText,
	}
}

// Timestamp formats t as Barman does (a Python float of the mtime):
// seconds since the epoch with at least one decimal, e.g. "1700000000.25"
// or "1700000000.0". Microseconds are the finest unit kept, about what a
// double holds for current dates.
func Timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	frac := strings.TrimRight(fmt.Sprintf("%06d", t.Nanosecond()/1000), "0")
	if frac == "" {
		frac = "0"
	}
	return strconv.FormatInt(t.Unix(), 10) + "." + frac
}

// BackupEnv is the environment of backup, delete and recovery scripts.
type BackupEnv struct {
	BackupDir      string // BARMAN_BACKUP_DIR: base/<id>
	BackupID       string
	BackupInfoPath string // BARMAN_BACKUP_INFO_PATH
	PreviousID     string
	NextID         string
	Status         string
	Error          string
}

// Env returns the variables.
func (b BackupEnv) Env() Env {
	return Env{
		"BARMAN_BACKUP_DIR":       b.BackupDir,
		"BARMAN_BACKUP_ID":        b.BackupID,
		"BARMAN_BACKUP_INFO_PATH": b.BackupInfoPath,
		"BARMAN_PREVIOUS_ID":      b.PreviousID,
		"BARMAN_NEXT_ID":          b.NextID,
		"BARMAN_STATUS":           b.Status,
		"BARMAN_ERROR":            b.Error,
	}
}

// Merge returns a copy of e with more added (more wins).
func (e Env) Merge(more Env) Env {
	out := make(Env, len(e)+len(more))
	for k, v := range e {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}
