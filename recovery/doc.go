// Package recovery restores a catalogued base backup into a PostgreSQL data
// directory, locally or on another host over ssh, and prepares it for
// point-in-time recovery: it copies (or decompresses) the backup, places
// tablespaces, copies the WAL recovery needs (or points restore_command at
// get-wal), writes the recovery settings and signal file, and disables
// archive_command so the restored server cannot pollute the archive of the
// server it came from.
//
// It takes its own Options; it never reads configuration.
package recovery
