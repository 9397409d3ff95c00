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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}
