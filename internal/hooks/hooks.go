// Package hooks runs Barman's hook scripts: the pre/post archive, backup,
// delete, recovery and wal_delete scripts and their "retry" variants.
//
// A standard script runs once and its exit code is only logged. A retry
// script is rerun until it exits 0 (success), 62 (ABORT_CONTINUE) or 63
// (ABORT_STOP); any other exit is a transient failure. Only in the pre phase
// does ABORT_STOP mean anything: the caller must then skip the operation.
// The order is: pre script, pre retry script, the operation, post retry
// script, post script.
//
// Scripts run through /bin/sh -c in their own process group, with the
// process environment plus BARMAN_* variables. Their output goes to the
// logger, with anything that looks like a password masked.
package hooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exit codes with a meaning for retry scripts.
const (
	ExitSuccess       = 0
	ExitAbortContinue = 62
	ExitAbortStop     = 63
)

// ErrAbortStop is returned (wrapped in *AbortError) by Set.RunPre when the
// pre retry script exited with ABORT_STOP: the operation must not happen.
var ErrAbortStop = errors.New("hook script requested ABORT_STOP")

// AbortError tells which script stopped the operation.
type AbortError struct {
	Hook string // BARMAN_HOOK value, e.g. "archive_retry_script"
	Code int
}

func (e *AbortError) Error() string {
	return fmt.Sprintf("pre %s exited with %d (ABORT_STOP): operation stopped", e.Hook, e.Code)
}

// Is makes errors.Is(err, ErrAbortStop) true.
func (e *AbortError) Is(target error) bool { return target == ErrAbortStop }

// Phase is the BARMAN_PHASE value.
type Phase string

const (
	PhasePre  Phase = "pre"
	PhasePost Phase = "post"
)

// Hook kinds: the name part of the configuration options, and the prefix
// of BARMAN_HOOK ("<kind>_script" or "<kind>_retry_script").
const (
	KindArchive   = "archive"
	KindBackup    = "backup"
	KindDelete    = "delete"
	KindRecovery  = "recovery"
	KindWALDelete = "wal_delete"
)

// Env is a set of BARMAN_* variables (full names, e.g. "BARMAN_SEGMENT").
type Env map[string]string

// Outcome is how a script run ended.
type Outcome int

const (
	// OutcomeNotRun: no command configured.
	OutcomeNotRun Outcome = iota
	// OutcomeSuccess: exit 0.
	OutcomeSuccess
	// OutcomeFailed: a standard script exited non-zero or could not start.
	OutcomeFailed
	// OutcomeAbortContinue: a retry script exited 62.
	OutcomeAbortContinue
	// OutcomeAbortStop: a retry script exited 63.
	OutcomeAbortStop
	// OutcomeCancelled: the context ended first.
	OutcomeCancelled
)

func (o Outcome) String() string {
	switch o {
	case OutcomeNotRun:
		return "not run"
	case OutcomeSuccess:
		return "success"
	case OutcomeFailed:
		return "failed"
	case OutcomeAbortContinue:
		return "abort-continue"
	case OutcomeAbortStop:
		return "abort-stop"
	case OutcomeCancelled:
		return "cancelled"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// RetryPolicy is the pause between failed tries of a retry script. After
// NapAfter consecutive short breaks the next pause is Nap instead, and the
// count starts again (Barman: 3 s breaks, a 60 s nap after 5 of them).
type RetryPolicy struct {
	Break    time.Duration
	Nap      time.Duration
	NapAfter int
}

// DefaultRetry is Barman's schedule: 3 s between tries, 60 s after every
// 5 failures.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{Break: 3 * time.Second, Nap: 60 * time.Second, NapAfter: 5}
}

func (p RetryPolicy) orDefault() RetryPolicy {
	if p == (RetryPolicy{}) {
		return DefaultRetry()
	}
	if p.NapAfter <= 0 {
		p.NapAfter = DefaultRetry().NapAfter
	}
	return p
}

// delay returns the pause after the failure-th failed try (1-based).
func (p RetryPolicy) delay(failure int) time.Duration {
	if failure%(p.NapAfter+1) == 0 {
		return p.Nap
	}
	return p.Break
}

// maxOutput caps what is kept of each output stream: a chatty script must
// not fill the log or the memory.
const maxOutput = 64 << 10

// Script is one command to run.
type Script struct {
	// Command is passed to /bin/sh -c.
	Command string
	// Hook is the BARMAN_HOOK value ("archive_script", "backup_retry_script"...).
	Hook string
	// Retry marks a retry script (BARMAN_RETRY=1 and the retry loop).
	Retry bool
	// Phase is BARMAN_PHASE ("" = not set).
	Phase Phase
	// Dir is the working directory ("" = the caller's).
	Dir string
	// RetryPolicy spaces the tries of a retry script (zero = DefaultRetry).
	RetryPolicy RetryPolicy
	// WaitDelay bounds how long output pipes are drained after the
	// process group was killed (0 = 5 s).
	WaitDelay time.Duration
	Logger    *slog.Logger
}

// Run runs the script once, or, for a retry script, until it exits 0, 62 or
// 63 or ctx ends. env is added to the process environment. The returned
// code is the last exit status (-1 when the process did not exit
// normally). err is only ctx's error.
func (s Script) Run(ctx context.Context, env Env) (Outcome, int, error) {
	if strings.TrimSpace(s.Command) == "" {
		return OutcomeNotRun, 0, nil
	}
	log := s.logger()
	if !s.Retry {
		code, err := s.once(ctx, env, log)
		switch {
		case ctx.Err() != nil:
			return OutcomeCancelled, code, ctx.Err()
		case err != nil || code != 0:
			return OutcomeFailed, code, nil
		}
		return OutcomeSuccess, code, nil
	}
	pol := s.RetryPolicy.orDefault()
	for failures := 1; ; failures++ {
		code, _ := s.once(ctx, env, log)
		if ctx.Err() != nil {
			return OutcomeCancelled, code, ctx.Err()
		}
		switch code {
		case ExitSuccess:
			return OutcomeSuccess, code, nil
		case ExitAbortContinue:
			return OutcomeAbortContinue, code, nil
		case ExitAbortStop:
			return OutcomeAbortStop, code, nil
		}
		d := pol.delay(failures)
		log.Info("hook retry script failed; retrying", "attempt", failures, "exit_code", code, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return OutcomeCancelled, code, ctx.Err()
		case <-t.C:
		}
	}
}

func (s Script) logger() *slog.Logger {
	l := s.Logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	attrs := []any{"hook", s.Hook}
	if s.Phase != "" {
		attrs = append(attrs, "phase", string(s.Phase))
	}
	return l.With(attrs...)
}

// Environ is the child's environment: the process environment with env
// added (env wins; exec keeps the last of duplicate keys).
func Environ(env Env) []string {
	out := os.Environ()
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out
}

// once runs the command a single time. A start failure returns code -1
// and the error.
func (s Script) once(ctx context.Context, env Env, log *slog.Logger) (int, error) {
	full := Env{}
	for k, v := range env {
		full[k] = v
	}
	full["BARMAN_HOOK"] = s.Hook
	full["BARMAN_RETRY"] = "0"
	if s.Retry {
		full["BARMAN_RETRY"] = "1"
	}
	if s.Phase != "" {
		full["BARMAN_PHASE"] = string(s.Phase)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", s.Command)
	cmd.Env = Environ(full)
	cmd.Dir = s.Dir
	// Own process group, so cancellation also kills what the shell
	// started (a sleeping child would otherwise keep running and hold
	// the output pipes open).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = s.WaitDelay
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 5 * time.Second
	}
	stdout := &capBuffer{max: maxOutput}
	stderr := &capBuffer{max: maxOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmdText := Redact(s.Command)
	log.Debug("running hook script", "command", cmdText)
	start := time.Now()
	err := cmd.Run()
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	level := slog.LevelInfo
	if err != nil || code != 0 {
		level = slog.LevelWarn
	}
	for _, o := range []struct {
		name string
		buf  *capBuffer
	}{{"stdout", stdout}, {"stderr", stderr}} {
		if o.buf.Len() == 0 {
			continue
		}
		text := Redact(strings.TrimRight(o.buf.String(), "\n"))
		if o.buf.truncated {
			text += "\n[output truncated]"
		}
		log.Log(context.WithoutCancel(ctx), level, "hook script output", "command", cmdText, "stream", o.name, "output", text)
	}
	switch {
	case ctx.Err() != nil:
		log.Warn("hook script killed: operation cancelled", "command", cmdText, "err", ctx.Err())
	case cmd.ProcessState == nil:
		log.Warn("hook script could not start", "command", cmdText, "err", err)
	case code != 0:
		log.Warn("hook script failed", "command", cmdText, "exit_code", code, "duration", time.Since(start).Round(time.Millisecond))
	default:
		log.Debug("hook script succeeded", "command", cmdText, "duration", time.Since(start).Round(time.Millisecond))
	}
	return code, err
}

// capBuffer keeps the first max bytes written and drops the rest.
type capBuffer struct {
	bytes.Buffer
	max       int
	truncated bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room < len(p) {
		b.truncated = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// redactors are compiled on first use: every cellar process links this
// package, most never log a hook's output, and start-up time is the
// latency of restore_command.
var redactors = sync.OnceValue(func() []struct {
	re   *regexp.Regexp
	repl string
} {
	return []struct {
		re   *regexp.Regexp
		repl string
	}{
		// password=secret and password='a secret' (libpq conninfo), also
		// as PGPASSWORD=... in a command line.
		{regexp.MustCompile(`(?i)(pass(?:word)?\s*=\s*)('(?:[^'\\]|\\.)*'|"[^"]*"|\S+)`), "${1}***"},
		// scheme://user:secret@host
		{regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`), "${1}***@"},
		// --password secret / --password=secret
		{regexp.MustCompile(`(?i)(--?pass(?:word)?[ =])\S+`), "${1}***"},
	}
})

// Redact masks anything that looks like a password in a command line or
// script output before it is logged.
func Redact(s string) string {
	for _, r := range redactors() {
		s = r.re.ReplaceAllString(s, r.repl)
	}
	return s
}
