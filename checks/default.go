package checks

// Default returns the registry of every check Cellar implements, in
// Barman's order (barman/server.py check(): archive, postgres, WAL
// streaming, directories, retention, backup validity, WAL validity, backup
// manager, configuration, identity, archivers, archiver errors). Reading
// this list shows every check; adding one means a probe constructor plus one
// line here.
func Default() *Registry {
	r, err := NewRegistry(
		// check_archive
		probeWALArchive(),
		emptyDirProbe("empty incoming directory", "empty_incoming_directory", "archiver", false),
		queueProbe("incoming WALs directory", "incoming_wals_directory", "incoming_wals_queue_files", false),
		emptyDirProbe("empty streaming directory", "empty_streaming_directory", "streaming_archiver", true),
		queueProbe("streaming WALs directory", "streaming_wals_directory", "streaming_wals_queue_files", true),
		// check_postgres
		probePostgreSQL(),
		probeBackupPrivileges(),
		probePostgreSQLStreaming(),
		probeWALLevel(),
		probeSummarizeWAL(),
		probeIsStandby(),
		probePrimaryNotStandby(),
		probeSameSystemID(),
		probeReplicationSlot(),
		// check_wal_streaming
		probeWALMonitoring(),
		probeWALStreamingConn(),
		probeWALStreamingWALLevel(),
		probeWALStreamingSystemID(),
		probeWALStreamingSlot(),
		// check_directories, check_retention_policy_settings
		probeDirectories(),
		probeCatalogFormat(),
		probeRetentionPolicySettings(),
		// check_backup_validity
		probeBackupMaximumAge(),
		probeBackupMinimumSize(),
		probeRestoreDrillMaximumAge(),
		// check_wal_validity
		probeWALMaximumAge(),
		probeWALSize(),
		// BackupManager.check
		probeCompressionSettings(),
		probeFailedBackups(),
		probeMinimumRedundancy(),
		probeBackupVerification(),
		// executor checks of a passive node
		probeSSH(),
		// check_configuration, check_identity
		probeConfiguration(),
		probeSystemIDCoherence(),
		// archivers: streaming, then file
		probeReceiveWALRunning(),
		probeArchiveMode(),
		probeArchiveCommand(),
		probeContinuousArchiving(),
		// check_archiver_errors
		probeArchiverErrors(),
	)
	if err != nil {
		// The list above is static; TestDefaultRegistry keeps it valid.
		panic("checks: invalid default registry: " + err.Error())
	}
	return r
}
