package passive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/durable"
)

// ErrNotPassive reports a passive operation on a server without
// primary_ssh_command.
var ErrNotPassive = errors.New("server is not passive (no primary_ssh_command)")

// ErrRemote wraps every failure of a command run on the primary.
var ErrRemote = errors.New("command on the primary failed")

// Options configure the passive side of one server.
type Options struct {
	// Server is the server name, the same on both nodes.
	Server string
	// Layout is the local (passive) catalog.
	Layout catalog.Layout
	// PrimarySSHCommand reaches the primary node, e.g. "ssh cellar@backup1";
	// the remote command line is appended to it and run with sh -c.
	PrimarySSHCommand string
	// RemoteCellar is the program run on the primary (default "cellar").
	// It is inserted unquoted so it may carry a prefix such as "sudo -u
	// barman cellar".
	RemoteCellar string
	// RemoteConfig, when set, is passed to the remote program as -c FILE
	// (Barman's forward_config_path).
	RemoteConfig string
	// BandwidthLimitKBps limits the transfers (KiB/s); 0 = unlimited.
	BandwidthLimitKBps int
	// Compression is the local WAL compression setting ("" or "none" for
	// none). When both sides report one, they must match (Barman's rule).
	Compression string
	// Obsolete, when set, reports backups that local retention would
	// delete at once; sync-cron does not copy them. Optional.
	Obsolete func(b *catalog.BackupInfo) bool
	Logger   *slog.Logger
	Now      func() time.Time
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o *Options) check() error {
	if strings.TrimSpace(o.PrimarySSHCommand) == "" {
		return fmt.Errorf("server %s: %w", o.Server, ErrNotPassive)
	}
	if o.Server == "" {
		return errors.New("passive: Options.Server is empty")
	}
	return nil
}

// shellQuote quotes s for a POSIX shell (ssh joins its arguments and the
// remote shell splits them again).
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@,+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// remoteCommandLine is the full "sh -c" script for a remote cellar call.
func (o *Options) remoteCommandLine(args ...string) string {
	prog := o.RemoteCellar
	if prog == "" {
		prog = "cellar"
	}
	var b strings.Builder
	b.WriteString(strings.TrimSpace(o.PrimarySSHCommand))
	b.WriteByte(' ')
	b.WriteString(prog)
	if o.RemoteConfig != "" {
		b.WriteString(" -c ")
		b.WriteString(shellQuote(o.RemoteConfig))
	}
	b.WriteString(" -q")
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	return b.String()
}

// tailBuffer keeps the last bytes written (the remote's stderr for error
// messages).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(strings.Fields(strings.ReplaceAll(string(t.buf), "\n", "; ")), " ")
}

// runRemote runs a cellar command on the primary, feeding stdin and handing
// its stdout (rate limited) to handle. handle must consume what it needs;
// a handle error kills the command.
func (o *Options) runRemote(ctx context.Context, stdin io.Reader, handle func(io.Reader) error, args ...string) error {
	line := o.remoteCommandLine(args...)
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	// Own process group, so that cancelling kills ssh too, not only sh.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = stdin
	var stderr tailBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("server %s: %s: %w", o.Server, args[0], err)
	}
	o.logger().Debug("running on primary", "command", line)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("server %s: start %q: %w: %w", o.Server, line, ErrRemote, err)
	}
	herr := handle(newRateLimitedReader(ctx, out, o.BandwidthLimitKBps))
	if herr != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	} else {
		// Drain so the remote never blocks on a full pipe before exiting.
		_, _ = io.Copy(io.Discard, out)
	}
	werr := cmd.Wait()
	switch {
	case herr != nil && ctx.Err() != nil:
		return fmt.Errorf("server %s: %s: %w", o.Server, args[0], ctx.Err())
	case herr != nil && werr != nil:
		// The remote exit status explains a broken stream best.
		return fmt.Errorf("server %s: %s on primary: %w: %v (%s); %w", o.Server, args[0], ErrRemote, werr, stderr.String(), herr)
	case herr != nil:
		return fmt.Errorf("server %s: %s on primary: %w", o.Server, args[0], herr)
	case werr != nil:
		return fmt.Errorf("server %s: %s on primary: %w: %v (%s)", o.Server, args[0], ErrRemote, werr, stderr.String())
	}
	return nil
}

// FetchInfo runs sync-info on the primary with an optional starting point.
func FetchInfo(ctx context.Context, opts Options, lastWAL string, lastPosition int64) (*Info, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	args := []string{"sync-info", opts.Server}
	if lastWAL != "" {
		args = append(args, lastWAL, strconv.FormatInt(lastPosition, 10))
	}
	var info *Info
	err := opts.runRemote(ctx, nil, func(r io.Reader) error {
		data, err := io.ReadAll(io.LimitReader(r, 1<<30))
		if err != nil {
			return err
		}
		info, err = ParseInfo(data)
		return err
	}, args...)
	if err != nil {
		return nil, err
	}
	return info, nil
}

// PrimaryInfo asks the primary for its sync-info, starting after the WAL
// recorded in sync-wals.info; if that fails (for example the primary's
// retention removed that WAL) it retries once without a starting point, as
// Barman does.
func PrimaryInfo(ctx context.Context, opts Options) (*Info, error) {
	last, err := LoadSyncWALsInfo(opts.Layout)
	if err != nil {
		return nil, err
	}
	if last.LastWAL == "" {
		return FetchInfo(ctx, opts, "", 0)
	}
	info, err := FetchInfo(ctx, opts, last.LastWAL, last.LastPosition)
	if err == nil || ctx.Err() != nil {
		return info, err
	}
	opts.logger().Warn("sync-info from last position failed, retrying from the start", "server", opts.Server, "last_wal", last.LastWAL, "error", err)
	return FetchInfo(ctx, opts, "", 0)
}

// LoadPrimaryInfo reads primary.info; a missing file matches fs.ErrNotExist.
func LoadPrimaryInfo(layout catalog.Layout) (*Info, error) {
	p := layout.PrimaryInfoPath()
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", layout.Server, err)
	}
	info, err := ParseInfo(data)
	if err != nil {
		return nil, fmt.Errorf("server %s: %s: %w", layout.Server, p, err)
	}
	return info, nil
}

// WritePrimaryInfo stores info as primary.info atomically and durably.
func WritePrimaryInfo(layout catalog.Layout, info *Info) error {
	data, err := info.MarshalJSON()
	if err != nil {
		return fmt.Errorf("server %s: primary.info: %w", layout.Server, err)
	}
	if err := durable.MkdirAll(layout.BackupDir, 0o700); err != nil {
		return fmt.Errorf("server %s: %w", layout.Server, err)
	}
	if err := durable.WriteFile(layout.PrimaryInfoPath(), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("server %s: primary.info: %w", layout.Server, err)
	}
	return nil
}

// SyncWALsInfo is wals/sync-wals.info: the last primary xlog.db line the
// passive node has fully copied.
type SyncWALsInfo struct {
	LastWAL      string
	LastPosition int64
}

// LoadSyncWALsInfo reads sync-wals.info; a missing file is the zero value.
func LoadSyncWALsInfo(layout catalog.Layout) (SyncWALsInfo, error) {
	p := layout.SyncWALsInfoPath()
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return SyncWALsInfo{}, nil
	}
	if err != nil {
		return SyncWALsInfo{}, fmt.Errorf("server %s: %w", layout.Server, err)
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return SyncWALsInfo{}, nil
	}
	name, pos, ok := strings.Cut(s, "\t")
	if !ok {
		return SyncWALsInfo{}, fmt.Errorf("server %s: %s: want \"<wal>\\t<position>\", got %q", layout.Server, p, s)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(pos), 10, 64)
	if err != nil || n < 0 {
		return SyncWALsInfo{}, fmt.Errorf("server %s: %s: bad position %q", layout.Server, p, pos)
	}
	return SyncWALsInfo{LastWAL: strings.TrimSpace(name), LastPosition: n}, nil
}

// WriteSyncWALsInfo writes sync-wals.info durably ("<wal>\t<position>").
func WriteSyncWALsInfo(layout catalog.Layout, s SyncWALsInfo) error {
	if err := durable.MkdirAll(layout.WalsDir, 0o700); err != nil {
		return fmt.Errorf("server %s: %w", layout.Server, err)
	}
	data := []byte(s.LastWAL + "\t" + strconv.FormatInt(s.LastPosition, 10))
	if err := durable.WriteFile(layout.SyncWALsInfoPath(), data, 0o600); err != nil {
		return fmt.Errorf("server %s: sync-wals.info: %w", layout.Server, err)
	}
	return nil
}

// compactErr shortens a multi-line error for one-line messages.
func compactErr(err error) string {
	return string(bytes.Join(bytes.Fields([]byte(err.Error())), []byte(" ")))
}
