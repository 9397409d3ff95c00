package main

import "github.com/spf13/cobra"

// extraCommands lists the commands of the operation packages (archive,
// streaming, backup, recovery, checks, daemon, ...).
func extraCommands(g *globalOptions) []*cobra.Command {
	return []*cobra.Command{
		newCheckCommand(g),
		newBackupCommand(g),
		newArchiveWALCommand(g),
		newCheckBackupCommand(g),
		newGetWALCommand(g),
		newPutWALCommand(g),
		newWALArchiveCommand(g),
		newWALRestoreCommand(g),
		newExporterCommand(g),
		newSwitchWALCommand(g),
		newReplicationStatusCommand(g),
		newDeleteCommand(g),
		newRecoverCommand(g),
		newVerifyBackupCommand(g),
		newDaemonCommand(g),
		newCronCommand(g),
		newReceiveWALCommand(g),
		newKeepCommand(g),
		newStatusCommand(g),
		newListProcessesCommand(g),
		newTerminateProcessCommand(g),
		newListFilesCommand(g),
		newSyncInfoCommand(g),
		newSyncBackupCommand(g),
		newSyncWALsCommand(g),
		newSyncBackupSendCommand(g),
		newSyncWALsSendCommand(g),
		newRetentionCommand(g),
		newDrillCommand(g), newShowDrillCommand(g),
	}
}
