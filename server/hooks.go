package server

import (
	"runtime/debug"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/internal/hooks"
)

// hookVersion is BARMAN_VERSION: Cellar's module version as built.
func hookVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return "cellar " + bi.Main.Version
	}
	return "cellar"
}

func (s *Server) hookSet(kind, pre, preRetry, post, postRetry string) hooks.Set {
	return hooks.Set{
		Kind: kind, Pre: pre, PreRetry: preRetry, Post: post, PostRetry: postRetry,
		Server: s.name, Configuration: s.cfgFile, Version: hookVersion(),
		RetryPolicy: s.hookRetry, Logger: s.log,
	}
}

func (s *Server) hooksConf() config.Hooks { return s.cfg.Hooks }

// ArchiveHooks are the pre/post archive scripts (run per WAL file by
// archive-wal).
func (s *Server) ArchiveHooks() hooks.Set {
	h := s.hooksConf()
	return s.hookSet(hooks.KindArchive, h.PreArchiveScript, h.PreArchiveRetryScript, h.PostArchiveScript, h.PostArchiveRetryScript)
}

// BackupHooks are the pre/post backup scripts.
func (s *Server) BackupHooks() hooks.Set {
	h := s.hooksConf()
	return s.hookSet(hooks.KindBackup, h.PreBackupScript, h.PreBackupRetryScript, h.PostBackupScript, h.PostBackupRetryScript)
}

// RecoveryHooks are the pre/post recovery scripts; callers building
// recovery.Options set its Hooks field from this.
func (s *Server) RecoveryHooks() hooks.Set {
	h := s.hooksConf()
	return s.hookSet(hooks.KindRecovery, h.PreRecoveryScript, h.PreRecoveryRetryScript, h.PostRecoveryScript, h.PostRecoveryRetryScript)
}

// DeleteHooks are the pre/post backup deletion scripts.
func (s *Server) DeleteHooks() hooks.Set {
	h := s.hooksConf()
	return s.hookSet(hooks.KindDelete, h.PreDeleteScript, h.PreDeleteRetryScript, h.PostDeleteScript, h.PostDeleteRetryScript)
}

// WALDeleteHooks are the pre/post scripts run per WAL file removed from
// the archive.
func (s *Server) WALDeleteHooks() hooks.Set {
	h := s.hooksConf()
	return s.hookSet(hooks.KindWALDelete, h.PreWALDeleteScript, h.PreWALDeleteRetryScript, h.PostWALDeleteScript, h.PostWALDeleteRetryScript)
}

// backupHookEnv is the delete scripts' view of backup b.
func (s *Server) backupHookEnv(b *catalog.BackupInfo) hooks.Env {
	e := hooks.BackupEnv{
		BackupDir:      s.layout.BackupDirPath(b.ID),
		BackupID:       b.ID,
		BackupInfoPath: s.layout.BackupInfoPath(b.ID),
		Status:         string(b.Status),
		Error:          b.Error,
	}
	if p, err := s.cat.Previous(b.ID); err == nil && p != nil {
		e.PreviousID = p.ID
	}
	if n, err := s.cat.Next(b.ID); err == nil && n != nil {
		e.NextID = n.ID
	}
	return e.Env()
}
