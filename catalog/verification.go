package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cellar-backup/cellar/internal/durable"
)

// VerifyResult is the outcome of checking a stored backup against its
// backup_manifest.
type VerifyResult string

const (
	// VerifyOK: every file the manifest lists is present with its size and
	// checksum.
	VerifyOK VerifyResult = "ok"
	// VerifyFailed: a file is missing, has the wrong size or checksum, or
	// the backup could not be read.
	VerifyFailed VerifyResult = "failed"
	// VerifyUnverifiable: the backup has no backup_manifest (old Barman
	// rsync backups) or one without checksums, so nothing could be proven.
	// It is never reported as passed.
	VerifyUnverifiable VerifyResult = "unverifiable"
)

// VerificationFile is the name, inside base/<id>/, of the record of the
// last verification. Barman ignores files it does not know there.
const VerificationFile = "cellar-verify.json"

// Verification records the last verification of one backup: written by
// `verify-backup` (and the daemon's schedule), read by the probes and the
// exporter.
type Verification struct {
	BackupID   string        `json:"backup_id"`
	Result     VerifyResult  `json:"result"`
	VerifiedAt time.Time     `json:"verified_at"`
	Duration   time.Duration `json:"duration_ns"`
	Files      int64         `json:"files"`
	Bytes      int64         `json:"bytes"`
	// Error names the first problem found (failed) or why nothing could be
	// checked (unverifiable); empty when ok.
	Error string `json:"error,omitempty"`
}

// VerificationPath returns base/<id>/cellar-verify.json.
func (l Layout) VerificationPath(id string) string {
	return filepath.Join(l.BaseDir, id, VerificationFile)
}

// SaveVerification writes the record of backup v.BackupID durably,
// replacing the previous one whole.
func (c *Catalog) SaveVerification(v Verification) error {
	if err := ParseBackupID(v.BackupID); err != nil {
		return err
	}
	switch v.Result {
	case VerifyOK, VerifyFailed, VerifyUnverifiable:
	default:
		return fmt.Errorf("server %s: backup %s: invalid verification result %q", c.layout.Server, v.BackupID, v.Result)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(c.layout.VerificationPath(v.BackupID), data, 0o600); err != nil {
		return fmt.Errorf("server %s: backup %s: verification record: %w", c.layout.Server, v.BackupID, err)
	}
	return nil
}

// Verification reads the last verification of a backup. ok is false when
// the backup was never verified. A record that does not parse is an error
// naming the file.
func (c *Catalog) Verification(id string) (v Verification, ok bool, err error) {
	if err := ParseBackupID(id); err != nil {
		return v, false, err
	}
	path := c.layout.VerificationPath(id)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("server %s: %w", c.layout.Server, err)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, false, fmt.Errorf("server %s: verification record %s: %w", c.layout.Server, path, err)
	}
	if v.BackupID != id {
		return v, false, fmt.Errorf("server %s: verification record %s names backup %q", c.layout.Server, path, v.BackupID)
	}
	return v, true, nil
}
