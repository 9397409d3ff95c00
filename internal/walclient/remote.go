// Package walclient holds the pieces of `cellar wal-archive` and `cellar
// wal-restore` (PostgreSQL's archive_command and restore_command) that do
// not run processes: the ssh command line for remote mode, the mapping of
// ssh exit statuses to the client exit codes PostgreSQL sees, and the
// restore spool used by parallel prefetch. The commands themselves live
// in cmd/cellar, which may run ssh and call the archive package.
package walclient

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SSHFailure is the exit status ssh uses for its own errors (connection
// refused, authentication, host key): anything else is the remote
// command's status.
const SSHFailure = 255

// Client exit codes, as Barman's barman-wal-archive and barman-wal-restore
// use them (BARMAN-FACTS §9). PostgreSQL only distinguishes zero from
// non-zero (and aborts on codes above 125), but operators and scripts read
// these.
const (
	// ArchiveSSHFailed: wal-archive could not reach the backup host.
	ArchiveSSHFailed = 3
	// ArchiveBadInput: WAL_PATH is a directory or ssh cannot be started.
	ArchiveBadInput = 2
	// RestoreNotFound: the WAL is not in the archive (end of archive).
	RestoreNotFound = 1
	// RestoreSSHFailed: wal-restore could not reach the backup host, or
	// (local mode) could not read the archive.
	RestoreSSHFailed = 2
	// RestoreBadInput: bad WAL name, or DEST_PATH is a directory.
	RestoreBadInput = 3
)

// DefaultSpoolDir is wal-restore's default prefetch spool, as Barman's
// (the system var-tmp directory + walrestore).
const DefaultSpoolDir = "/var/tmp/walrestore"

// Remote says how to reach the Cellar (or Barman) host over ssh.
type Remote struct {
	// SSHCommand is the ssh program and its fixed options, split on
	// white space ("ssh -i /key -o BatchMode=yes"); "" means "ssh".
	SSHCommand string
	// Host is the backup host; required.
	Host string
	// User is the remote user; "" lets ssh decide (ssh_config, or the
	// local user name).
	User string
	// Port is the ssh port; 0 lets ssh decide.
	Port int
	// Program is the remote cellar executable; "" means "cellar". Pointing
	// it at "barman" talks to a Barman server, whose get-wal and put-wal
	// speak the same protocol.
	Program string
	// Config is the remote configuration file (-c); "" = remote default.
	Config string
}

// ErrBadRemote is wrapped when a Remote cannot form a safe command line.
var ErrBadRemote = errors.New("invalid remote")

// Validate checks the fields that end up on ssh's command line, so that
// a host or user can never be taken by ssh for an option.
func (r Remote) Validate() error {
	switch {
	case r.Host == "":
		return fmt.Errorf("%w: no host", ErrBadRemote)
	case strings.HasPrefix(r.Host, "-") || strings.ContainsAny(r.Host, " \t\n@"):
		return fmt.Errorf("%w: host %q", ErrBadRemote, r.Host)
	case strings.HasPrefix(r.User, "-") || strings.ContainsAny(r.User, " \t\n@"):
		return fmt.Errorf("%w: user %q", ErrBadRemote, r.User)
	case r.Port < 0 || r.Port > 65535:
		return fmt.Errorf("%w: port %d", ErrBadRemote, r.Port)
	case len(strings.Fields(r.SSHCommand)) == 0 && r.SSHCommand != "":
		return fmt.Errorf("%w: empty ssh command", ErrBadRemote)
	}
	return nil
}

// Argv returns the full local argv that runs the remote program with
// args: ssh [-p PORT] -q -T [USER@]HOST PROGRAM [-c CONFIG] ARGS... . ssh
// joins the remote words with spaces and hands them to the remote user's
// shell, so each word is single-quoted here.
func (r Remote) Argv(args ...string) ([]string, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	argv := strings.Fields(r.SSHCommand)
	if len(argv) == 0 {
		argv = []string{"ssh"}
	}
	if r.Port != 0 {
		argv = append(argv, "-p", strconv.Itoa(r.Port))
	}
	// -q: no banners or warnings mixed into the WAL stream's stderr;
	// -T: no pseudo-terminal, which would mangle binary data.
	argv = append(argv, "-q", "-T")
	dest := r.Host
	if r.User != "" {
		dest = r.User + "@" + r.Host
	}
	argv = append(argv, dest)
	prog := r.Program
	if prog == "" {
		prog = "cellar"
	}
	words := []string{prog}
	if r.Config != "" {
		words = append(words, "--config="+r.Config)
	}
	words = append(words, args...)
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = ShellQuote(w)
	}
	return append(argv, strings.Join(quoted, " ")), nil
}

// ShellQuote quotes s for a POSIX shell: plain words are left alone for
// readable logs, anything else is single-quoted with embedded quotes
// closing the quote, writing an escaped quote and reopening.
func ShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ArchiveExitCode maps the exit status of `ssh ... put-wal` to
// wal-archive's exit code: ssh's own failure becomes 3, the remote
// command's status passes through.
func ArchiveExitCode(sshStatus int) int {
	if sshStatus == SSHFailure {
		return ArchiveSSHFailed
	}
	return sshStatus
}

// RestoreExitCode maps the exit status of `ssh ... get-wal` to
// wal-restore's exit code: ssh's own failure becomes 2, the remote status
// (1 not found, 3 bad name) passes through.
func RestoreExitCode(sshStatus int) int {
	if sshStatus == SSHFailure {
		return RestoreSSHFailed
	}
	return sshStatus
}
