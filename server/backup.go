package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cellar-backup/cellar/backup"
	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
)

// BackupOptions maps the configuration to the backup package's options.
// Callers set Name, Progress and overrides from flags.
func (s *Server) BackupOptions() (backup.Options, error) {
	cfg := s.cfg
	if cfg.BackupMethod != config.BackupMethodPostgres {
		return backup.Options{}, fmt.Errorf("server %s: backup_method %s is not supported (only postgres)", s.name, cfg.BackupMethod)
	}
	if cfg.IsPassive() {
		return backup.Options{}, fmt.Errorf("server %s: passive node: backups are copied from the primary Cellar (sync-backup), not taken", s.name)
	}
	comp := string(cfg.BackupCompression)
	if comp == "none" {
		comp = ""
	}
	// backup_compression_level becomes the server's COMPRESSION_DETAIL;
	// zstd keeps its two server-side workers.
	detail := ""
	if cfg.BackupCompressionLevel > 0 {
		detail = fmt.Sprintf("level=%d", cfg.BackupCompressionLevel)
		if comp == "zstd" {
			detail += "," + backup.DefaultZstdDetail
		}
	}
	return backup.Options{
		CompressionDetail:   detail,
		Server:              s.name,
		Layout:              s.layout,
		Conninfo:            cfg.Conninfo.Raw(),
		ReplConninfo:        cfg.StreamingConninfo.Raw(),
		PrimaryConninfo:     strings.TrimSpace(cfg.PrimaryConninfo.Raw()),
		Compression:         comp,
		ImmediateCheckpoint: cfg.ImmediateCheckpoint,
		ReuseBackup:         string(cfg.ReuseBackup),
		MaxRateKBps:         int64(cfg.BandwidthLimit),
		Logger:              s.log,
		Now:                 s.Now,
		Hooks:               s.BackupHooks(),
	}, nil
}

// Backup takes one base backup with the configured options and runs a
// first check-backup on it (seed backup).
func (s *Server) Backup(ctx context.Context, name string, progress io.Writer) (*catalog.BackupInfo, error) {
	bo, err := s.BackupOptions()
	if err != nil {
		return nil, err
	}
	bo.Name = name
	bo.Progress = progress
	if err := s.layout.MakeDirs(); err != nil {
		return nil, err
	}
	info, err := backup.Run(ctx, bo)
	if err != nil {
		return info, err
	}
	return backup.CheckBackup(ctx, s.layout, info.ID)
}

// CheckBackups runs check-backup on every WAITING_FOR_WALS backup, oldest
// first, after an archive-wal pass so that WAL already delivered counts
// (seed cron_check_backup).
func (s *Server) CheckBackups(ctx context.Context) ([]*catalog.BackupInfo, error) {
	waiting, err := s.cat.Available(catalog.StatusWaitingForWALs)
	if err != nil {
		return nil, err
	}
	var out []*catalog.BackupInfo
	var errs []error
	if fixed, err := backup.RepairChildren(ctx, s.layout); err != nil {
		errs = append(errs, err)
	} else if len(fixed) > 0 {
		s.log.Warn("repaired children_backup_ids of parent backups", "server", s.name, "backup_ids", fixed)
	}
	for _, b := range waiting {
		info, err := backup.CheckBackup(ctx, s.layout, b.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("server %s: check-backup %s: %w", s.name, b.ID, err))
			continue
		}
		out = append(out, info)
	}
	return out, errors.Join(errs...)
}
