// Package checks holds Cellar's health checks as registered probes: one
// Probe value per Barman check (same name, hint and order), run by a
// Registry against a Target (a configured server). The same []Result feeds
// the console/JSON/Nagios renderers (package alerts) and the Prometheus
// collector (package exporter), so the two outputs cannot disagree.
//
// Probes have no side effects: unlike `barman check`, no WAL is archived or
// switched and no directory is created.
package checks
