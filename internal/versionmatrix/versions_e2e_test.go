//go:build e2e

package versionmatrix

import "testing"

// TestVersionMatrixE2E is TestVersionMatrix restoring every backup of every
// version.
func TestVersionMatrixE2E(t *testing.T) {
	t.Parallel()
	runMatrix(t, func(int) []string { return compressions })
}
