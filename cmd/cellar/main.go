// Command cellar is a backup and recovery manager for PostgreSQL that keeps a
// Barman-compatible catalog, exports its checks to Prometheus and Nagios, and
// runs archiving, streaming and backups from one daemon.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// defaultConfigFiles are tried in order when neither -c nor CELLAR_CONFIG is given.
var defaultConfigFiles = []string{"/etc/cellar/config.yaml", "/etc/cellar.yaml"}

// globalOptions are the flags shared by every command plus lazily loaded state.
type globalOptions struct {
	configFile string
	format     string
	quiet      bool
	debug      bool
	logLevel   string

	out     io.Writer
	errOut  io.Writer
	environ []string
	logger  *slog.Logger

	cfg *config.Config
}

func (g *globalOptions) json() bool { return g.format == "json" }

// loadConfig reads the configuration once per process.
func (g *globalOptions) loadConfig() (*config.Config, error) {
	if g.cfg != nil {
		return g.cfg, nil
	}
	file := g.configFile
	if file == "" {
		for _, kv := range g.environ {
			if v, ok := strings.CutPrefix(kv, "CELLAR_CONFIG="); ok && v != "" {
				file = v
			}
		}
	}
	if file == "" {
		for _, f := range defaultConfigFiles {
			if _, err := os.Stat(f); err == nil {
				file = f
				break
			}
		}
	}
	if file == "" {
		return nil, usageError("no configuration file: pass -c FILE or set CELLAR_CONFIG (tried %s)", strings.Join(defaultConfigFiles, ", "))
	}
	cfg, err := config.Load(config.LoadOptions{File: file, Environ: g.environ})
	if err != nil {
		return nil, withCode(exitUsage, err)
	}
	g.cfg = cfg
	return cfg, nil
}

// server returns the named, configured server.
func (g *globalOptions) server(name string) (*server.Server, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	if _, err := cfg.Server(name); err != nil {
		return nil, usageError("unknown server %q (configured: %s)", name, strings.Join(cfg.ServerNames(), ", "))
	}
	return server.New(cfg, name, g.logger.With("server", name))
}

// servers resolves "all" or a list of names.
func (g *globalOptions) servers(names []string) ([]*server.Server, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	if len(names) == 1 && names[0] == "all" {
		names = cfg.ServerNames()
	}
	var out []*server.Server
	for _, n := range names {
		s, err := g.server(n)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:           "cellar",
		Short:         "Backup and recovery manager for PostgreSQL (Barman-compatible catalog)",
		Version:       versionText(),
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.format != "console" && g.format != "json" {
				return usageError("invalid --format %q: use console or json", g.format)
			}
			level := slog.LevelInfo
			switch {
			case g.debug:
				level = slog.LevelDebug
			case g.quiet:
				level = slog.LevelError
			case g.logLevel != "":
				if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
					return usageError("invalid --log-level %q", g.logLevel)
				}
			}
			g.logger = slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: level}))
			return nil
		},
	}
	root.SetOut(g.out)
	root.SetErr(g.errOut)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(exitUsage, err) })
	f := root.PersistentFlags()
	f.StringVarP(&g.configFile, "config", "c", "", "configuration file (default $CELLAR_CONFIG, then /etc/cellar/config.yaml)")
	f.StringVarP(&g.format, "format", "f", "console", "output format: console or json")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "only print errors")
	f.BoolVarP(&g.debug, "debug", "d", false, "debug logging")
	f.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error")

	root.AddCommand(
		newListServersCommand(g),
		newShowServersCommand(g),
		newListBackupsCommand(g),
		newShowBackupCommand(g),
		newRebuildXLogDBCommand(g),
		newConfigCommand(g),
	)
	for _, c := range extraCommands(g) {
		root.AddCommand(c)
	}
	return root
}

// run executes the CLI and returns the process exit code. Tests call it
// directly with their own writers.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	g := &globalOptions{out: stdout, errOut: stderr, environ: environ, format: "console"}
	g.logger = slog.New(slog.NewTextHandler(stderr, nil))
	root := newRootCommand(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var sig *signalError
	if err != nil && errors.As(context.Cause(ctx), &sig) {
		// Stopped by a signal: main prints the one line.
		return sig.exitCode()
	}
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || ee.err != nil {
			fmt.Fprintf(stderr, "cellar: %s\n", oneLine(err))
		}
		if exitCode(err) == exitFailure && isCobraUsage(err) {
			return exitUsage
		}
	}
	return exitCode(err)
}

// isCobraUsage recognises cobra's own argument errors, which are usage errors.
func isCobraUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.Contains(s, "arg(s)") || strings.HasPrefix(s, "unknown flag") || strings.HasPrefix(s, "required flag")
}

// oneLine keeps error output to a single line, as monitoring and cron mail
// expect.
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
}

func main() {
	os.Exit(runWithSignals(os.Args[1:], os.Stdout, os.Stderr, os.Environ()))
}

// signalError is the cancellation cause when the process is asked to stop
// by SIGINT, SIGTERM or SIGQUIT.
type signalError struct{ sig syscall.Signal }

func (e *signalError) Error() string { return "stopped by " + signalName(e.sig) }

// exitCode is the shell's convention for a process ended by a signal
// (128+N). PostgreSQL, which runs archive_command and restore_command,
// treats a status above 125 like a signal: it neither counts the WAL as
// archived nor takes it for the end of the archive.
func (e *signalError) exitCode() int { return 128 + int(e.sig) }

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return sig.String()
}

// quitGrace is how long a command may take to clean up after SIGQUIT
// (remove its temp files) before the process exits anyway. SIGQUIT is
// PostgreSQL's immediate shutdown, which sends SIGKILL a few seconds
// later; SIGINT and SIGTERM wait for the command (the daemon's graceful
// stop may take longer), and a second signal exits at once.
const quitGrace = 2 * time.Second

// runWithSignals runs the CLI with SIGINT, SIGTERM and SIGQUIT cancelling
// its context. Go's default SIGQUIT action dumps every goroutine's stack
// to stderr, which PostgreSQL copies into its log whenever an immediate
// shutdown catches archive_command running; here every such signal ends
// the command instead. A command that then returns an error (it was
// interrupted) exits 128+N after one line on stderr; one that returns
// nil (the daemon's graceful stop) exits 0.
func runWithSignals(args []string, stdout, stderr io.Writer, environ []string) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, stdout, stderr, environ) }()
	var sig *signalError
	select {
	case code := <-done:
		return code
	case s := <-sigs:
		sig = &signalError{sig: s.(syscall.Signal)}
		cancel(sig)
	}
	return waitAfterSignal(sig, done, sigs, stderr)
}

// waitAfterSignal waits for the cancelled command (see quitGrace) and
// returns the process exit code.
func waitAfterSignal(sig *signalError, done <-chan int, sigs <-chan os.Signal, stderr io.Writer) int {
	var deadline <-chan time.Time
	if sig.sig == syscall.SIGQUIT {
		timer := time.NewTimer(quitGrace)
		defer timer.Stop()
		deadline = timer.C
	}
	select {
	case c := <-done:
		if c == exitOK {
			return exitOK
		}
	case <-sigs:
	case <-deadline:
	}
	fmt.Fprintf(stderr, "cellar: %s\n", sig.Error())
	return sig.exitCode()
}
