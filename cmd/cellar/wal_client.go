package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/spf13/pflag"

	"github.com/cellar-backup/cellar/internal/walclient"
)

// remoteFlags are the ssh options shared by wal-archive and wal-restore.
// Names follow barman-wal-archive / barman-wal-restore (-U/--user,
// --port); the host, positional in Barman, is --host here so that the
// local mode needs no host at all. The remote configuration file is the
// global -c, as in Barman: in remote mode no local configuration is read.
type remoteFlags struct {
	host, user, sshCommand, program string
	port                            int
}

func (r *remoteFlags) register(f *pflag.FlagSet) {
	f.StringVar(&r.host, "host", "", "backup host to reach over ssh (remote mode); without it the local catalog is used")
	f.StringVarP(&r.user, "user", "U", "", "user on the backup host (default: ssh's choice)")
	f.IntVar(&r.port, "port", 0, "ssh port of the backup host")
	f.StringVar(&r.sshCommand, "ssh-command", "ssh", "ssh program and fixed options, split on spaces (e.g. \"ssh -i /var/lib/postgresql/.ssh/cellar\")")
	f.StringVar(&r.program, "remote-cellar", "cellar", "cellar executable on the backup host (\"barman\" talks to a Barman server)")
}

func (r *remoteFlags) remote(g *globalOptions) walclient.Remote {
	return walclient.Remote{
		SSHCommand: r.sshCommand, Host: r.host, User: r.user, Port: r.port,
		Program: r.program, Config: g.configFile,
	}
}

// sshRun runs the remote command described by args. It returns the exit
// status (-1 if the process did not start or was killed) and an error
// whose message carries the tail of the remote stderr. The remote stderr
// is not passed through: wal-restore's prefetch expects "not found"
// answers that must not flood the PostgreSQL log.
func sshRun(ctx context.Context, rem walclient.Remote, stdin io.Reader, stdout io.Writer, args ...string) (int, error) {
	argv, err := rem.Argv(args...)
	if err != nil {
		return -1, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout = stdin, stdout
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	err = cmd.Run()
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no message"
		}
		return ee.ExitCode(), fmt.Errorf("%s on %s: exit status %d: %s", strings.Join(args, " "), rem.Host, ee.ExitCode(), msg)
	}
	return -1, fmt.Errorf("%s on %s: %w", strings.Join(args, " "), rem.Host, err)
}

// limitedBuffer keeps the first max bytes and swallows the rest, so a
// chatty remote cannot grow memory.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
