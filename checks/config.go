package checks

import (
	"context"
	"fmt"
	"strings"

	"github.com/cellar-backup/cellar/config"
)

func probeRetentionPolicySettings() Probe {
	return Probe{
		Name: "retention policy settings", Key: "retention_policy_settings", Group: "retention", Critical: true,
		Run: func(_ context.Context, t Target) Result {
			p := t.Config().RetentionPolicy
			if !p.IsSet() {
				return Pass("")
			}
			if _, err := config.ParseRetentionPolicy(p.String()); err != nil || p.String() == "" {
				return Fail("see log")
			}
			return Pass("")
		},
	}
}

func probeCompressionSettings() Probe {
	return Probe{
		Name: "compression settings", Key: "compression_settings", Group: "backups", Critical: true,
		Run: func(_ context.Context, t Target) Result {
			c := t.Config()
			switch c.Compression {
			case "", config.CompressionNone, config.CompressionGzip, config.CompressionLZ4, config.CompressionZstd:
			default:
				return Fail(fmt.Sprintf("unknown compression %q", string(c.Compression)))
			}
			var bc config.BackupCompression
			if err := bc.UnmarshalText([]byte(c.BackupCompression)); c.BackupCompression != "" && err != nil {
				return Fail(fmt.Sprintf("unknown backup_compression %q", string(c.BackupCompression)))
			}
			return Pass("")
		},
	}
}

// configMessages are the configuration problems Load accepts but that
// leave the server unable to work (Barman's per-server msg_list).
func configMessages(c *config.Server) []string {
	var msgs []string
	if !c.Archiver && !c.StreamingArchiver && !c.IsPassive() {
		msgs = append(msgs, "No archiver enabled for server. Please turn on 'archiver', 'streaming_archiver' or both")
	}
	if !c.IsPassive() && !c.Conninfo.IsSet() {
		msgs = append(msgs, "conninfo is not set")
	}
	if c.StreamingArchiver && !c.StreamingConninfo.IsSet() && !c.Conninfo.IsSet() {
		msgs = append(msgs, "streaming_archiver requires streaming_conninfo")
	}
	if c.BackupDirectory == "" {
		msgs = append(msgs, "backup_directory is not set")
	}
	return msgs
}

func probeConfiguration() Probe {
	return Probe{
		Name: "configuration", Key: "configuration", Group: "configuration", Critical: true, FailureOnly: true,
		Run: func(_ context.Context, t Target) Result {
			msgs := configMessages(t.Config())
			if len(msgs) == 0 {
				return Pass("")
			}
			return Fail(strings.Join(msgs, "; "))
		},
	}
}
