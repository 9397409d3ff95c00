//go:build unix

package checktarget

import (
	"io/fs"
	"syscall"
)

// devIno returns the device and inode of a stat result.
func devIno(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino //nolint:unconvert // Dev is int32 on some platforms
	}
	return 0, 0
}
