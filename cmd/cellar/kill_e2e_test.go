//go:build e2e

package main

import "testing"

// TestKilledDeletionIsFinishedE2E: 30 kill -9 of a real `cellar delete`
// and 30 of `cellar retention` at random points after the deletion began;
// after each, list/show/check tell the truth and one cron pass completes
// the deletion (`make e2e`).
func TestKilledDeletionIsFinishedE2E(t *testing.T) {
	killTrials(t, 30)
}
