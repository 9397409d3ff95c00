package checks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/postgres"
	"github.com/cellar-backup/cellar/wal"
)

// realTarget is a test-only Target over real state: a Barman-layout
// directory tree in t.TempDir() and real PostgreSQL clusters reached
// through package postgres. It mirrors what server.Server does, so probes
// are exercised against the same data a production run sees.
type realTarget struct {
	name string
	cfg  *config.Server
	dirs Directories
	now  time.Time // zero = time.Now
	lock string    // receive-wal lock file
	// lag is what Passive reports as the sync lag (nil = no sync yet).
	lag *PassiveStatus
}

func newRealTarget(t *testing.T, name string) *realTarget {
	t.Helper()
	bd := filepath.Join(t.TempDir(), name)
	cfg := config.DefaultServer(name)
	cfg.BackupDirectory = bd
	cfg.Archiver = true
	cfg.Conninfo = "host=/nonexistent-cellar-socket dbname=postgres connect_timeout=2"
	d := Directories{
		Backup: bd, Base: filepath.Join(bd, "base"), Wals: filepath.Join(bd, "wals"),
		Incoming: filepath.Join(bd, "incoming"), Streaming: filepath.Join(bd, "streaming"),
		Errors: filepath.Join(bd, "errors"), Meta: filepath.Join(bd, "meta"),
	}
	d.XLogDB = filepath.Join(d.Wals, name+"-xlog.db")
	for _, p := range d.All() {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return &realTarget{name: name, cfg: cfg, dirs: d, lock: filepath.Join(filepath.Dir(bd), "."+name+"-receive-wal.lock")}
}

func (r *realTarget) Name() string             { return r.name }
func (r *realTarget) Config() *config.Server   { return r.cfg }
func (r *realTarget) Directories() Directories { return r.dirs }
func (r *realTarget) Now() time.Time {
	if r.now.IsZero() {
		return time.Now()
	}
	return r.now
}

// pgStatusFrom converts postgres.Status plus slot and receiver rows; the
// server package does the same.
func pgStatusFrom(s *postgres.Status, slotName string, slot *postgres.Slot, receiver *wal.LSN) *PGStatus {
	p := &PGStatus{
		ServerVersion: s.ServerVersion, ServerVersionText: s.ServerVersionText,
		IsSuperuser: s.IsSuperuser, HasBackupPrivileges: s.HasBackupPrivileges,
		HasMonitoringPrivileges: s.HasMonitoringPrivileges,
		WALLevel:                s.WALLevel, ArchiveMode: s.ArchiveMode, ArchiveCommand: s.ArchiveCommand,
		IsInRecovery: s.IsInRecovery, SystemID: s.SystemID, CurrentLSN: s.CurrentLSN,
		WALSegmentSize: s.WALSegmentSize, ReceiverFlushLSN: receiver, SummarizeWAL: s.SummarizeWAL,
		Archiver: ArchiverStats{
			ArchivedCount: s.Archiver.ArchivedCount, LastArchivedWAL: s.Archiver.LastArchivedWAL,
			FailedCount: s.Archiver.FailedCount, LastFailedWAL: s.Archiver.LastFailedWAL,
			IsArchiving: s.Archiver.IsArchiving,
		},
	}
	if s.Archiver.LastArchivedTime != nil {
		p.Archiver.LastArchivedTime = *s.Archiver.LastArchivedTime
	}
	if s.Archiver.LastFailedTime != nil {
		p.Archiver.LastFailedTime = *s.Archiver.LastFailedTime
	}
	if slotName != "" {
		p.SlotChecked = true
		if slot != nil {
			p.Slot = &ReplicationSlot{Name: slot.Name, Active: slot.Active, RestartLSN: slot.RestartLSN}
		}
	}
	return p
}

func (r *realTarget) pgStatus(ctx context.Context, conninfo config.Conninfo) (*PGStatus, error) {
	conn, err := postgres.Connect(ctx, conninfo.Raw())
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := conn.Status(ctx)
	if err != nil {
		return nil, err
	}
	var slot *postgres.Slot
	if r.cfg.SlotName != "" {
		if slot, err = conn.ReplicationSlot(ctx, r.cfg.SlotName); err != nil {
			return nil, err
		}
	}
	var receiver *wal.LSN
	stats, err := conn.ReplicationStats(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range stats {
		if s.ApplicationName == r.cfg.StreamingArchiverName && s.FlushLSN != nil {
			receiver = s.FlushLSN
		}
	}
	return pgStatusFrom(st, r.cfg.SlotName, slot, receiver), nil
}

func (r *realTarget) identify(ctx context.Context, conninfo config.Conninfo) (*StreamingStatus, error) {
	rc, err := postgres.ConnectReplication(ctx, conninfo.Raw())
	if err != nil {
		return nil, err
	}
	defer rc.Close(context.WithoutCancel(ctx))
	si, err := rc.IdentifySystem(ctx)
	if err != nil {
		return nil, err
	}
	return &StreamingStatus{SystemID: si.SystemID, Timeline: si.Timeline, XLogPos: si.XLogPos, ServerVersion: rc.ServerVersion()}, nil
}

func (r *realTarget) PostgresStatus(ctx context.Context) (*PGStatus, error) {
	return r.pgStatus(ctx, r.cfg.Conninfo)
}

func (r *realTarget) StreamingStatus(ctx context.Context) (*StreamingStatus, error) {
	c := r.cfg.StreamingConninfo
	if !c.IsSet() {
		c = r.cfg.Conninfo
	}
	return r.identify(ctx, c)
}

func (r *realTarget) WALPostgresStatus(ctx context.Context) (*PGStatus, error) {
	if !r.cfg.WALConninfo.IsSet() || r.cfg.WALConninfo == r.cfg.Conninfo {
		return nil, ErrNotConfigured
	}
	return r.pgStatus(ctx, r.cfg.WALConninfo)
}

func (r *realTarget) WALStreamingStatus(ctx context.Context) (*StreamingStatus, error) {
	c := r.cfg.WALStreamingConninfo
	if !c.IsSet() {
		c = r.cfg.WALConninfo
	}
	if !c.IsSet() {
		return nil, ErrNotConfigured
	}
	return r.identify(ctx, c)
}

func (r *realTarget) PrimaryStatus(ctx context.Context) (*PGStatus, error) {
	if !r.cfg.PrimaryConninfo.IsSet() {
		return nil, ErrNotConfigured
	}
	return r.pgStatus(ctx, r.cfg.PrimaryConninfo)
}

const backupTimeLayout = "2006-01-02 15:04:05.999999-07:00"

// Backups reads <bd>/meta/<id>-backup.info (Barman's key=value format).
func (r *realTarget) Backups(ctx context.Context) ([]Backup, error) {
	files, err := filepath.Glob(filepath.Join(r.dirs.Meta, "*-backup.info"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []Backup
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		kv := map[string]string{}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				kv[k] = v
			}
		}
		b := Backup{ID: strings.TrimSuffix(filepath.Base(f), "-backup.info"), Status: kv["status"],
			BeginWAL: kv["begin_wal"], EndWAL: kv["end_wal"]}
		if v := kv["parent_backup_id"]; v != "None" {
			b.ParentID = v
		}
		b.Size, _ = strconv.ParseInt(kv["size"], 10, 64)
		if v := kv["end_time"]; v != "None" && v != "" {
			if b.EndTime, err = time.Parse(backupTimeLayout, v); err != nil {
				return nil, fmt.Errorf("%s: end_time: %w", f, err)
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// WALs reads xlog.db lines (name, size, time[, compression[, encryption]]).
func (r *realTarget) WALs(ctx context.Context, fn func(WAL) error) error {
	f, err := os.Open(r.dirs.XLogDB)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			return fmt.Errorf("%s: bad line %q", r.dirs.XLogDB, sc.Text())
		}
		size, _ := strconv.ParseInt(fields[1], 10, 64)
		ts, _ := strconv.ParseFloat(fields[2], 64)
		if err := fn(WAL{Name: fields[0], Size: size, Time: time.Unix(0, int64(ts*1e9))}); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (r *realTarget) Identity() (*Identity, error) {
	data, err := os.ReadFile(filepath.Join(r.dirs.Backup, "identity.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var id struct {
		SystemID string `json:"systemid"`
		Version  string `json:"version"`
	}
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, err
	}
	return &Identity{SystemID: id.SystemID, Version: id.Version}, nil
}

// Passive runs "<primary_ssh_command> true" the way Barman's ssh check
// runs a minimal command; the lag comes from r.lag (checktarget's tests
// cover reading it from a real passive catalog).
func (r *realTarget) Passive(ctx context.Context) (*PassiveStatus, error) {
	if !r.cfg.IsPassive() {
		return nil, ErrNotConfigured
	}
	st := &PassiveStatus{}
	if r.lag != nil {
		st.LagKnown, st.LagSeconds, st.LagSegments = true, r.lag.LagSeconds, r.lag.LagSegments
	}
	out, err := exec.CommandContext(ctx, "sh", "-c", r.cfg.PrimarySSHCommand+" true").CombinedOutput()
	if err != nil {
		st.PrimaryErr = fmt.Errorf("%q: %w: %s", r.cfg.PrimarySSHCommand, err, out)
	}
	return st, nil
}

// ReceiveWAL tries the lock: if it is free, nobody runs receive-wal.
func (r *realTarget) ReceiveWAL() (int, bool, error) {
	f, err := os.OpenFile(r.lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		data, _ := os.ReadFile(r.lock)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		return pid, true, nil
	}
	if err != nil {
		return 0, false, err
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return 0, false, nil
}

// holdReceiveWALLock takes the lock as a running receive-wal would.
func (r *realTarget) holdReceiveWALLock(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(r.lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%d\n", os.Getpid())
	t.Cleanup(func() { f.Close() })
}

// writeBackup writes a backup.info the way Barman lays it out.
func (r *realTarget) writeBackup(t *testing.T, id, status string, end time.Time, size int64, beginWAL, endWAL, parent string) {
	t.Helper()
	endText := "None"
	if !end.IsZero() {
		endText = end.Format(backupTimeLayout)
	}
	if parent == "" {
		parent = "None"
	}
	lines := []string{
		"begin_wal=" + beginWAL, "end_time=" + endText, "end_wal=" + endWAL,
		"parent_backup_id=" + parent, "server_name=" + r.name, fmt.Sprintf("size=%d", size), "status=" + status,
	}
	if err := os.WriteFile(filepath.Join(r.dirs.Meta, id+"-backup.info"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// appendWAL appends an xlog.db line.
func (r *realTarget) appendWAL(t *testing.T, name string, size int64, at time.Time) {
	t.Helper()
	f, err := os.OpenFile(r.dirs.XLogDB, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "%s\t%d\t%s\tNone\tNone\n", name, size, strconv.FormatFloat(float64(at.UnixNano())/1e9, 'f', -1, 64)); err != nil {
		t.Fatal(err)
	}
}

func (r *realTarget) writeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// runProbe runs one probe of the default registry through Registry.Run.
func runProbe(t *testing.T, tgt Target, key string) (Result, bool) {
	t.Helper()
	p, ok := Default().Probe(key)
	if !ok {
		t.Fatalf("no probe %q", key)
	}
	reg, err := NewRegistry(p)
	if err != nil {
		t.Fatal(err)
	}
	res := reg.Run(t.Context(), tgt, Full)
	switch len(res) {
	case 0:
		return Result{}, false
	case 1:
		return res[0], true
	}
	t.Fatalf("probe %q: %d results", key, len(res))
	return Result{}, false
}

// mustProbe runs a probe that must produce a result with the wanted status
// and a hint containing hint.
func mustProbe(t *testing.T, tgt Target, key string, want Status, hint string) Result {
	t.Helper()
	r, ok := runProbe(t, tgt, key)
	if !ok {
		t.Fatalf("probe %q produced no result, want %s", key, want)
	}
	if r.Status != want || !strings.Contains(r.Hint, hint) {
		t.Fatalf("probe %q = %s (%q, detail %q), want %s with hint containing %q", key, r.Status, r.Hint, r.Detail, want, hint)
	}
	return r
}

func mustSkip(t *testing.T, tgt Target, key string) {
	t.Helper()
	if r, ok := runProbe(t, tgt, key); ok {
		t.Fatalf("probe %q = %s (%q), want no result", key, r.Status, r.Hint)
	}
}
