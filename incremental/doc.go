// Package incremental reads PostgreSQL 17+ incremental base backups and
// rebuilds full data files from a chain of them (full → incr → incr ...),
// natively and in one streaming pass: what pg_combinebackup does, but with
// sources that need not be plain directories (tar members, bucket objects)
// and an output that is any io.Writer.
//
// The pieces, in the order a restore uses them:
//
//   - ParseManifest reads each backup's backup_manifest, ParseLabel its
//     backup_label; CheckLabels checks that each backup was taken
//     incrementally from the one before it.
//   - NewPlan takes the chain's manifests, oldest (the full backup) first,
//     checks that they belong together, and says for every path of the
//     newest backup whether it is copied from one backup or reconstructed
//     from a range of backups; paths only older backups hold (dropped
//     databases, removed or truncated-away relation segments) are
//     ActionAbsent and must not be restored. backup_label is written as
//     FullLabel of the newest one.
//   - For a reconstructed path the caller opens one Source per backup of the
//     step's range (Step.SourcePaths: the file itself in the oldest,
//     INCREMENTAL.<name> in the others) and calls Reconstruct, which writes
//     the rebuilt file to an io.Writer and returns its size and manifest
//     checksum. For backups stored as uncompressed tar files, IndexTar
//     gives each member as an io.SectionReader without extracting it.
//
// A backup taker that receives INCREMENTAL.* tar members can check them on
// the fly with NewReader, which reads the header and then one block at a
// time.
//
// Everything here is pure computation over caller-supplied readers: no
// package function opens, creates or removes files, so writing the result
// durably (and deciding where) stays with the caller.
package incremental
