package server

import (
	"context"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/recovery"
)

// VerifyBackup checks backup b at rest against its backup_manifest and
// saves the verdict as the backup's catalog.Verification record (see
// recovery.VerifyBackup for the contract: a nil error means a verdict was
// reached and recorded, whatever it is). Safe to call from a schedule: it
// shares the backup's lock with restores and is refused while the backup
// is being deleted.
func (s *Server) VerifyBackup(ctx context.Context, b *catalog.BackupInfo) (catalog.Verification, error) {
	return recovery.VerifyBackup(ctx, recovery.VerifyOptions{Layout: s.layout, Backup: b, Now: s.now})
}
