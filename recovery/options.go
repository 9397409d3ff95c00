package recovery

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/internal/hooks"
	"github.com/cellar-backup/cellar/wal"
)

// Sentinel errors; every refusal wraps one of them so callers can map it to
// an exit code with errors.Is.
var (
	// ErrDestinationNotEmpty: the data directory or a tablespace location
	// already holds files and no delta restore was asked for.
	ErrDestinationNotEmpty = errors.New("destination is not empty")
	// ErrBackupNotRestorable: the backup is FAILED or still running.
	ErrBackupNotRestorable = errors.New("backup cannot be restored")
	// ErrConflictingTargets: more than one of time/xid/lsn/name/immediate.
	ErrConflictingTargets = errors.New("conflicting recovery targets")
	// ErrTargetBeforeBackup: the recovery target precedes the backup's end,
	// so no consistent state exists there.
	ErrTargetBeforeBackup = errors.New("recovery target is before the end of the backup")
	// ErrInvalidOptions: any other impossible combination of options.
	ErrInvalidOptions = errors.New("invalid recovery options")
	// ErrMissingWAL: a WAL file recovery needs is not in the archive.
	ErrMissingWAL = errors.New("required WAL file missing from the archive")
	// ErrBackupDamaged: a file of the backup is missing or does not match
	// its size or checksum in backup_manifest (or the manifest itself is
	// damaged).
	ErrBackupDamaged = errors.New("backup is damaged")
	// ErrBackupBusy: a delete or retention run holds the backup's lock.
	ErrBackupBusy = errors.New("backup is busy")
)

// Target is the point recovery stops at. At most one of Time, XID, LSN,
// Name and Immediate may be set.
type Target struct {
	Time      *time.Time
	XID       string
	LSN       *wal.LSN
	Name      string
	Immediate bool
	// TLI is "", a decimal timeline number, "current" or "latest".
	TLI string
	// Exclusive stops just before the target (time, xid, lsn only).
	Exclusive bool
	// Action is "", "pause", "shutdown" or "promote".
	Action string
}

// kinds returns the names of the stop targets that are set.
func (t Target) kinds() []string {
	var k []string
	if t.Time != nil {
		k = append(k, "time")
	}
	if t.XID != "" {
		k = append(k, "xid")
	}
	if t.LSN != nil {
		k = append(k, "lsn")
	}
	if t.Name != "" {
		k = append(k, "name")
	}
	if t.Immediate {
		k = append(k, "immediate")
	}
	return k
}

// IsPITR reports whether the target asks for point-in-time recovery, i.e.
// recovery settings must be written even without get-wal or standby mode.
func (t Target) IsPITR() bool { return len(t.kinds()) > 0 || t.TLI != "" }

// Validate checks the target on its own and against the backup it starts
// from. It does not resolve "latest".
func (t Target) Validate(b *catalog.BackupInfo) error {
	k := t.kinds()
	if len(k) > 1 {
		return fmt.Errorf("%w: only one of --target-time, --target-xid, --target-lsn, --target-name, --target-immediate may be given (got %s)",
			ErrConflictingTargets, strings.Join(k, ", "))
	}
	if t.Exclusive && t.Time == nil && t.XID == "" && t.LSN == nil {
		return fmt.Errorf("%w: --exclusive needs a time, xid or lsn target", ErrInvalidOptions)
	}
	switch t.Action {
	case "", "pause", "shutdown", "promote":
	default:
		return fmt.Errorf("%w: target action %q (use pause, shutdown or promote)", ErrInvalidOptions, t.Action)
	}
	if t.Action != "" && !t.IsPITR() {
		return fmt.Errorf("%w: --target-action %s needs a recovery target", ErrInvalidOptions, t.Action)
	}
	switch t.TLI {
	case "", "current", "latest":
	default:
		n, err := strconv.ParseUint(t.TLI, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("%w: target timeline %q (use a positive number, current or latest)", ErrInvalidOptions, t.TLI)
		}
		if b != nil && b.Timeline > 0 && int64(n) < b.Timeline {
			return fmt.Errorf("%w: target timeline %d is before the backup's timeline %d", ErrInvalidOptions, n, b.Timeline)
		}
	}
	if t.XID != "" {
		if _, err := strconv.ParseUint(t.XID, 10, 64); err != nil {
			return fmt.Errorf("%w: target xid %q is not a transaction id", ErrInvalidOptions, t.XID)
		}
	}
	if t.Name != "" && strings.ContainsAny(t.Name, "\n\r") {
		return fmt.Errorf("%w: target name contains a line break", ErrInvalidOptions)
	}
	if b == nil {
		return nil
	}
	if t.Time != nil && !b.EndTime.IsZero() && t.Time.Before(b.EndTime) {
		return fmt.Errorf("%w: target time %s is before backup %s ended at %s",
			ErrTargetBeforeBackup, t.Time.Format(time.RFC3339Nano), b.ID, b.EndTime.Format(time.RFC3339Nano))
	}
	if t.LSN != nil && b.EndXLog != "" {
		end, err := wal.ParseLSN(b.EndXLog)
		if err == nil && *t.LSN < end {
			return fmt.Errorf("%w: target LSN %s is before backup %s ended at %s", ErrTargetBeforeBackup, *t.LSN, b.ID, end)
		}
	}
	return nil
}

// Options drives one restore.
type Options struct {
	// Layout is the server's catalog layout (WAL archive, base/).
	Layout catalog.Layout
	// Backup is the backup to restore (already resolved from id/name).
	Backup *catalog.BackupInfo
	// Dest is the PGDATA to restore into (on the remote host with
	// RemoteSSHCommand).
	Dest string
	// Tablespaces relocates tablespaces: NAME -> LOCATION.
	Tablespaces map[string]string
	Target      Target
	// StandbyMode writes standby.signal instead of recovery.signal.
	StandbyMode bool
	// GetWAL fetches WAL lazily with RestoreCommand instead of copying it.
	GetWAL         bool
	RestoreCommand string
	// StagingWALDir is where WAL is copied for a PITR restore (default
	// <Dest>/cellar_wal); it is removed by recovery_end_command.
	StagingWALDir string
	// RecoveryConfFilename receives the recovery settings (default
	// postgresql.auto.conf, relative to Dest unless absolute).
	RecoveryConfFilename string
	// DeltaRestore rewrites only files that differ in an existing PGDATA
	// and removes extra ones.
	DeltaRestore bool
	// RemoteSSHCommand (e.g. "ssh postgres@db2") restores onto another
	// host by streaming a tar through it.
	RemoteSSHCommand string
	// Parallel is the number of files copied/decompressed at once
	// (default 2).
	Parallel int
	// XLogEntries is the server's WAL catalog (xlog.db content); nil means
	// read it from Layout.
	XLogEntries []WALEntry
	// Hooks are the pre/post recovery scripts: the pre scripts run before
	// anything is checked or copied (ABORT_STOP refuses the restore), the
	// post scripts always run last with BARMAN_ERROR set on failure.
	Hooks  hooks.Set
	Logger *slog.Logger
	// Progress, when set, receives one human line per restore phase.
	Progress io.Writer

	// beforeOpen, in tests, runs before each backup file is opened.
	beforeOpen func(path string)
}

// Result describes a finished restore.
type Result struct {
	BackupID  string
	Dest      string
	PITR      bool
	TargetTLI uint32 // 0 when PostgreSQL picks (get-wal without a timeline target)
	Files     int    // regular files written
	Bytes     int64  // bytes written
	Unchanged int    // delta restore: files left as they were
	Removed   int    // delta restore: extra files removed
	WALFiles  int    // WAL files copied (0 with get-wal)
	// Chain lists an incremental backup's chain, full backup first (nil
	// for a full backup); Reconstructed counts the files rebuilt from it,
	// SizeOnly those of them whose newest INCREMENTAL file could only be
	// checked by size.
	Chain         []string
	Reconstructed int
	SizeOnly      int
	WALDir        string // where the WAL went (pg_wal or the staging dir)
	RecoveryConf  string // file that received the recovery settings
	SignalFile    string // recovery.signal or standby.signal ("" when none)
	Warnings      []string
	Duration      time.Duration
}
