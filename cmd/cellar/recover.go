package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/recovery"
	"github.com/cellar-backup/cellar/wal"
)

type recoverOptions struct {
	targetTime, targetXID, targetLSN, targetName, targetTLI, targetAction string
	targetImmediate, exclusive, standby                                   bool
	tablespaces                                                           []string
	remoteSSH, stagingWAL, recoveryConfFile                               string
	getWAL, noGetWAL, delta, noDelta                                      bool
	parallel                                                              int
}

// newRecoverCommand restores a backup (seed recover), alias restore.
func newRecoverCommand(g *globalOptions) *cobra.Command {
	var o recoverOptions
	c := &cobra.Command{
		Use:     "recover SERVER BACKUP_ID|latest|auto|NAME DESTINATION",
		Aliases: []string{"restore"},
		Short:   "Restore a backup into a data directory, optionally to a point in time",
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRecover(cmd.Context(), g, o, args)
		},
	}
	f := c.Flags()
	f.StringVar(&o.targetTime, "target-time", "", "stop at this time (e.g. '2025-01-02 03:04:05+00'; no zone = local)")
	f.StringVar(&o.targetXID, "target-xid", "", "stop after this transaction id")
	f.StringVar(&o.targetLSN, "target-lsn", "", "stop at this WAL location (X/X)")
	f.StringVar(&o.targetName, "target-name", "", "stop at this restore point")
	f.BoolVar(&o.targetImmediate, "target-immediate", false, "stop as soon as the backup is consistent")
	f.StringVar(&o.targetTLI, "target-tli", "", "timeline to follow: a number, current or latest")
	f.BoolVar(&o.exclusive, "exclusive", false, "stop just before the target (time, xid, lsn)")
	f.StringVar(&o.targetAction, "target-action", "", "what to do at the target: pause, shutdown or promote")
	f.BoolVar(&o.standby, "standby-mode", false, "write standby.signal (restore as a standby)")
	f.StringArrayVar(&o.tablespaces, "tablespace", nil, "relocate a tablespace: NAME:LOCATION (repeatable)")
	f.StringVar(&o.remoteSSH, "remote-ssh-command", "", "restore on another host through this ssh command (e.g. \"ssh postgres@db2\")")
	f.StringVar(&o.stagingWAL, "staging-wal-directory", "", "where WAL for point-in-time recovery is copied (default DEST/cellar_wal)")
	f.StringVar(&o.recoveryConfFile, "recovery-conf-filename", "", "file receiving the recovery settings (default postgresql.auto.conf)")
	f.BoolVar(&o.getWAL, "get-wal", false, "fetch WAL on demand with restore_command instead of copying it")
	f.BoolVar(&o.noGetWAL, "no-get-wal", false, "copy the WAL recovery needs (default)")
	f.BoolVar(&o.delta, "delta-restore", false, "rewrite only files that differ in an existing data directory")
	f.BoolVar(&o.noDelta, "no-delta-restore", false, "refuse a non-empty destination (default)")
	f.IntVarP(&o.parallel, "jobs", "j", 2, "files copied or decompressed in parallel")
	return c
}

func parseRecoverTarget(o recoverOptions) (recovery.Target, error) {
	t := recovery.Target{XID: o.targetXID, Name: o.targetName, Immediate: o.targetImmediate, TLI: o.targetTLI,
		Exclusive: o.exclusive, Action: o.targetAction}
	if o.targetTime != "" {
		tm, err := catalog.ParsePyTime(o.targetTime, time.Local)
		if err != nil {
			if tm, err = time.Parse(time.RFC3339Nano, o.targetTime); err != nil {
				return t, usageError("--target-time %q: not a time (use 'YYYY-MM-DD HH:MM:SS[.ffffff][+ZZ:ZZ]')", o.targetTime)
			}
		}
		t.Time = &tm
	}
	if o.targetLSN != "" {
		l, err := wal.ParseLSN(o.targetLSN)
		if err != nil {
			return t, usageError("--target-lsn %q: %v", o.targetLSN, err)
		}
		t.LSN = &l
	}
	return t, nil
}

func runRecover(ctx context.Context, g *globalOptions, o recoverOptions, args []string) error {
	srvName, ref, dest := args[0], args[1], args[2]
	if strings.Contains(dest, ":") {
		return usageError("destination %q contains ':'; use --remote-ssh-command for a remote host", dest)
	}
	if o.getWAL && o.noGetWAL || o.delta && o.noDelta {
		return usageError("--get-wal/--no-get-wal and --delta-restore/--no-delta-restore are exclusive")
	}
	target, err := parseRecoverTarget(o)
	if err != nil {
		return err
	}
	if o.remoteSSH == "" {
		if dest, err = filepath.Abs(dest); err != nil {
			return err
		}
	}
	ts := map[string]string{}
	for _, spec := range o.tablespaces {
		name, loc, ok := strings.Cut(spec, ":")
		if !ok || name == "" || loc == "" {
			return usageError("--tablespace %q: use NAME:LOCATION", spec)
		}
		ts[name] = loc
	}
	s, err := g.server(srvName)
	if err != nil {
		return err
	}
	var b *catalog.BackupInfo
	if ref == "auto" {
		all, err := s.Catalog().Backups()
		if err != nil {
			return err
		}
		if b, err = recovery.SelectAuto(all, target); err != nil {
			return withCode(exitUsage, err)
		}
	} else if b, err = s.Catalog().Resolve(ref); err != nil {
		return err
	}
	opts := recovery.Options{
		Layout: s.Layout(), Backup: b, Dest: dest, Tablespaces: ts, Target: target,
		StandbyMode: o.standby, GetWAL: o.getWAL, StagingWALDir: o.stagingWAL,
		RecoveryConfFilename: o.recoveryConfFile, DeltaRestore: o.delta,
		RemoteSSHCommand: o.remoteSSH, Parallel: o.parallel, Logger: g.logger,
		Hooks: s.RecoveryHooks(),
	}
	if !g.json() {
		opts.Progress = g.out
	}
	if o.getWAL {
		if opts.RestoreCommand, err = getWALRestoreCommand(g, srvName, o); err != nil {
			return err
		}
	}
	res, err := recovery.Recover(ctx, opts)
	if err != nil {
		if errors.Is(err, recovery.ErrConflictingTargets) || errors.Is(err, recovery.ErrInvalidOptions) {
			return withCode(exitUsage, err)
		}
		return err
	}
	if g.json() {
		enc := json.NewEncoder(g.out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(g.out, "WARNING: %s\n", w)
	}
	if len(res.Chain) > 0 {
		fmt.Fprintf(g.out, "Incremental backup %s rebuilt from its chain %s (%d files reconstructed).\n",
			res.BackupID, strings.Join(res.Chain, " -> "), res.Reconstructed)
	}
	fmt.Fprintf(g.out, "Your PostgreSQL server has been successfully prepared for recovery!\n")
	if res.RecoveryConf != "" {
		fmt.Fprintf(g.out, "Recovery settings were written to %s; archive_command is disabled (originals kept as .origin files).\n", res.RecoveryConf)
	}
	return nil
}

// getWALRestoreCommand builds the restore_command fetching WAL from this
// catalog with prefetch: `cellar wal-restore` on the local catalog, or
// `cellar wal-restore --host <this host>` from a remote restore target.
func getWALRestoreCommand(g *globalOptions, srv string, o recoverOptions) (string, error) {
	partial := " -P"
	if o.standby {
		partial = ""
	}
	cfg := ""
	if g.configFile != "" {
		abs, err := filepath.Abs(g.configFile)
		if err != nil {
			return "", err
		}
		cfg = " -c " + shellWord(abs)
	}
	if o.remoteSSH == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", err
		}
		return shellWord(exe) + cfg + " wal-restore" + partial + " -p 4 " + shellWord(srv) + " %f %p", nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", err
	}
	u, err := user.Current()
	if err != nil {
		return "", err
	}
	return "cellar wal-restore --host " + shellWord(host) + " -U " + shellWord(u.Username) + partial + " -p 4 " + shellWord(srv) + " %f %p", nil
}

// shellWord quotes s for sh when it needs it.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
