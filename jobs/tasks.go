// Package jobs is Cellar's in-process job runner: one gocron/v2 scheduler
// that does, for every configured server, what Barman's `cron` does by
// spawning a process per task each minute. It runs archive-wal (triggered
// by new files in incoming/ and streaming/, with a fallback interval),
// scheduled backups (backup_schedule), scheduled verification
// (verify_backup_schedule), check-backup of WAITING_FOR_WALS
// backups, retention, passive-node sync, and supervises an in-process
// receive-wal per server.
//
// The work itself is injected as a Tasks implementation (the CLI builds it
// over *server.Server), so this package owns only scheduling, exclusion,
// panic containment, logging and job telemetry. Exclusion works on two
// levels: an in-process guard per (server, job) that is shared by scheduled
// runs and RunOnce, and the Barman-named flocks that the tasks themselves
// take, which also keep a hand-started CLI command and the daemon apart.
//
// gocron is imported only here (docs/STYLE.md §3.3).
package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Tasks is what the scheduler runs for one server; the CLI implements it
// over *server.Server. Each method must honour ctx: it is cancelled on
// shutdown and when the server leaves the configuration. A task that finds
// its Barman lock held returns an error matching lock.ErrBusy; the runner
// reports that as a skip, not a failure.
type Tasks interface {
	// ArchiveWAL runs one archive-wal pass (holds the archive-wal lock itself).
	ArchiveWAL(ctx context.Context, srv string) error
	// Backup takes one backup (holds the backup lock).
	Backup(ctx context.Context, srv string) error
	// CheckBackups finishes interrupted backup deletions (delete_this
	// markers), then runs check-backup on the WAITING_FOR_WALS backups.
	CheckBackups(ctx context.Context, srv string) error
	// EnforceRetention applies the retention policy and prunes WALs.
	EnforceRetention(ctx context.Context, srv string) error
	// SyncPassive synchronises a passive node; it may return
	// ErrNotApplicable.
	SyncPassive(ctx context.Context, srv string) error
	// VerifyBackups verifies the newest DONE backup and a bounded number of
	// DONE backups never verified, saving each verdict in the catalog. A
	// backup that is busy (being deleted) is skipped, not a failure; a
	// FAILED verdict is recorded (the verification metrics report it) and
	// is not an error of the job, which fails only when it could not
	// verify.
	VerifyBackups(ctx context.Context, srv string) error
	// StartReceiveWAL starts the in-process receive-wal supervisor and
	// returns once it runs. The handle ends when Stop is called, when the
	// ctx given here ends, or on an unrecoverable error.
	StartReceiveWAL(ctx context.Context, srv string) (ReceiverHandle, error)
}

// ReceiverHandle controls one running receive-wal.
type ReceiverHandle interface {
	// Stop asks the receiver to flush and end; it may return before it has.
	Stop()
	// Done is closed once the receiver has ended.
	Done() <-chan struct{}
	// State is a status snapshot for `status`/`replication-status`.
	State() any
}

// Observer receives job events. Its method set is exporter.JobMetrics'
// (this package does not import exporter). Calls come from job goroutines
// concurrently and must return quickly without I/O.
//
// Every JobStarted is followed by exactly one JobFinished, except when the
// task reports its lock busy or the job not applicable: then JobSkipped is
// called instead if the Observer also implements SkipObserver.
type Observer interface {
	JobStarted(server, job string)
	JobFinished(server, job string, d time.Duration, err error)
}

// SkipObserver is optionally implemented by an Observer that wants to see
// runs skipped because another process held the lock.
type SkipObserver interface {
	JobSkipped(server, job string, reason error)
}

// Forgetter is optionally implemented by an Observer that keeps per-server
// series; Reload calls Forget for every server removed from the
// configuration (exporter.JobMetrics implements it).
type Forgetter interface {
	Forget(server string)
}

// JobKind names a job. The values are the `job` label of the cellar_job_*
// metrics and the first part of gocron job names (<job>/<server>).
type JobKind string

// The jobs of one server.
const (
	JobArchiveWAL  JobKind = "archive-wal"
	JobReceiveWAL  JobKind = "receive-wal"
	JobBackup      JobKind = "backup"
	JobCheckBackup JobKind = "check-backup"
	JobRetention   JobKind = "retention"
	JobPassiveSync JobKind = "passive-sync"
	JobVerify      JobKind = "verify-backup"
)

// Kinds lists every job kind.
func Kinds() []JobKind {
	return []JobKind{JobArchiveWAL, JobReceiveWAL, JobBackup, JobCheckBackup, JobRetention, JobPassiveSync, JobVerify}
}

// Valid reports whether k is a known job kind.
func (k JobKind) Valid() bool {
	for _, x := range Kinds() {
		if k == x {
			return true
		}
	}
	return false
}

var (
	// ErrNotApplicable is returned by a task that has nothing to do for
	// this server's configuration (for example SyncPassive on a server
	// that is not passive). It is logged at debug level, never a failure.
	ErrNotApplicable = errors.New("not applicable")
	// ErrRunning is returned by RunOnce when the same job of the same
	// server is already running in this process.
	ErrRunning = errors.New("job already running in this process")
	// ErrUnknownJob is returned by RunOnce for an invalid JobKind.
	ErrUnknownJob = errors.New("unknown job")
	// ErrReceiverEnded reports that a receive-wal ended without being
	// asked to.
	ErrReceiverEnded = errors.New("receive-wal ended unexpectedly")
	// ErrStopped is returned by Run when called twice, and by Reload
	// after Run has returned.
	ErrStopped = errors.New("scheduler stopped")
)

// PanicError is the failure a panicking task turns into: the daemon keeps
// running and the Observer sees an ordinary failed run.
type PanicError struct {
	Server string
	Job    JobKind
	Value  any
	Stack  []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("job %s for server %q panicked: %v", e.Job, e.Server, e.Value)
}

// Unwrap returns the panic value when it is an error (panic(err)).
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

type nopObserver struct{}

func (nopObserver) JobStarted(string, string)                        {}
func (nopObserver) JobFinished(string, string, time.Duration, error) {}
func (nopObserver) JobSkipped(string, string, error)                 {}
func (nopObserver) Forget(string)                                    {}

var _ interface {
	SkipObserver
	Forgetter
	Observer
} = nopObserver{}
