//go:build e2e

package main

import (
	"testing"
	"time"
)

// TestDaemonAcceptanceE2E is issue 8's acceptance test at full length: two
// minutes of pgbench with a backup every 30 s and REDUNDANCY 2 (`make e2e`).
func TestDaemonAcceptanceE2E(t *testing.T) {
	testDaemonAcceptance(t, daemonScenario{workload: 2 * time.Minute, schedule: "@every 30s", every: 30 * time.Second})
}
