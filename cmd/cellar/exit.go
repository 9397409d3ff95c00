package main

import (
	"errors"
	"fmt"
)

// Exit codes, documented in README.md ("Exit codes").
const (
	exitOK       = 0
	exitFailure  = 1 // the command ran and failed (or, for get-wal, the WAL was not found)
	exitUsage    = 2 // bad flags, arguments or configuration
	exitBadInput = 3 // input that can never succeed (invalid WAL name, invalid backup id)
)

// exitError carries a specific exit code (and optionally no message) up to
// main, which is the only place that calls os.Exit.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// withCode wraps err so that main exits with code.
func withCode(code int, err error) error {
	if err == nil {
		return &exitError{code: code}
	}
	return &exitError{code: code, err: err}
}

// usageError marks a problem with how the command was called.
func usageError(format string, args ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, args...))
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}
