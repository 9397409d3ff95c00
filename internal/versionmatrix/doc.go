// Package versionmatrix holds the PostgreSQL version smoke test: for every
// major Cellar supports (13 to 18), a real cluster archives through
// `cellar wal-archive`, streams through `cellar receive-wal`, is backed up
// with every backup compression, and each backup is restored to a named
// restore point, started and compared table by table. It has no code of
// its own; see versions_test.go.
package versionmatrix
