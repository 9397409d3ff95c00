// Package catalog is the on-disk state of one server, byte-compatible with
// Barman 3.x: the directory Layout, backup.info files (BackupInfo), the
// backup Catalog with its shortcuts and annotations, identity.json, and the
// xlog.db WAL catalog (XLogDB).
//
// Everything that matters is written durably (temp file, fsync, rename,
// directory fsync). xlog.db is the exception that proves the rule: appends
// are a single O_APPEND write plus fsync, because renaming the whole
// catalog per WAL would be quadratic; a torn last line is treated as
// absent and repaired by the next append. Deletions and rebuilds replace
// the file atomically. All xlog.db access holds Barman's blocking
// .<server>-xlogdb.lock.
package catalog
