package recovery

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// configKey returns the lower-cased setting name of a postgresql.conf line,
// or "" for blanks and comments.
func configKey(line string) string {
	s := strings.TrimSpace(line)
	if s == "" || s[0] == '#' {
		return ""
	}
	end := strings.IndexAny(s, "= \t")
	if end < 0 {
		end = len(s)
	}
	return strings.ToLower(s[:end])
}

// pathSettings are settings whose value is a path that probably does not
// exist (or means something else) on the restore host; they only warn.
func isPathSetting(key string) bool {
	switch key {
	case "data_directory", "unix_socket_directories", "unix_socket_directory", "stats_temp_directory",
		"include", "include_dir", "include_if_exists":
		return true
	}
	return strings.HasSuffix(key, "_file")
}

// mangleConfig comments out archive_command (the restored server must not
// archive into the original server's archive) and old recovery target
// settings, also restore_command/recovery_end_command when replaceRestore.
// It returns the new content, whether anything changed, and warnings about
// path-like settings.
func mangleConfig(name string, data []byte, replaceRestore bool) ([]byte, bool, []string) {
	var out bytes.Buffer
	var warnings []string
	changed := false
	lines := strings.SplitAfter(string(data), "\n")
	for _, line := range lines {
		if line == "" {
			continue
		}
		key := configKey(line)
		comment := key == "archive_command" || strings.HasPrefix(key, "recovery_target") ||
			(replaceRestore && (key == "restore_command" || key == "recovery_end_command" || key == "standby_mode"))
		if comment {
			out.WriteString("#CELLAR# " + line)
			changed = true
			continue
		}
		if key != "" && isPathSetting(key) {
			warnings = append(warnings, fmt.Sprintf("%s: %s may point to a path that does not exist on the restore host: %s",
				name, key, strings.TrimSpace(line)))
		}
		out.WriteString(line)
	}
	if changed && out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		out.WriteByte('\n')
	}
	return out.Bytes(), changed, warnings
}

// quoteConf quotes a value for postgresql.conf.
func quoteConf(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

// recoverySettings renders the lines appended to the recovery file.
type recoverySettings struct {
	restoreCommand     string
	recoveryEndCommand string
	target             Target
	timeline           string // value of recovery_target_timeline, "" = not written
}

func (r recoverySettings) render(backupID string, now time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "\n# Recovery settings written by cellar recover (backup %s, %s)\n", backupID, now.UTC().Format(time.RFC3339))
	set := func(k, v string) { fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(v)) }
	if r.restoreCommand != "" {
		set("restore_command", r.restoreCommand)
	}
	if r.recoveryEndCommand != "" {
		set("recovery_end_command", r.recoveryEndCommand)
	}
	t := r.target
	switch {
	case t.Time != nil:
		set("recovery_target_time", t.Time.Format("2006-01-02 15:04:05.999999-07:00"))
	case t.XID != "":
		set("recovery_target_xid", t.XID)
	case t.LSN != nil:
		set("recovery_target_lsn", t.LSN.String())
	case t.Name != "":
		set("recovery_target_name", t.Name)
	case t.Immediate:
		set("recovery_target", "immediate")
	}
	if t.Exclusive {
		set("recovery_target_inclusive", "false")
	}
	if r.timeline != "" {
		set("recovery_target_timeline", r.timeline)
	}
	if t.Action != "" {
		set("recovery_target_action", t.Action)
	}
	return []byte(b.String())
}

// archiveOff is appended to postgresql.auto.conf, which PostgreSQL reads
// last, so archiving stays off even when archive_command comes from a file
// outside PGDATA.
const archiveOff = "\n# archive_command disabled by cellar recover: this server must not archive into the\n" +
	"# original server's WAL archive. Set your own archive_command before enabling it.\n" +
	"archive_command = false\n"
