package exporter

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Observer receives job events from the job runner. Package jobs declares
// the same method set (it does not import exporter); *JobMetrics
// implements it.
type Observer interface {
	JobStarted(server, job string)
	JobFinished(server, job string, d time.Duration, err error)
}

// JobMetrics turns job events into stored instruments (events, not state):
// last success time, last run duration, run and failure counters.
type JobMetrics struct {
	lastSuccess *prometheus.GaugeVec
	duration    *prometheus.GaugeVec
	runs        *prometheus.CounterVec
	failures    *prometheus.CounterVec
}

// NewJobMetrics registers the job instruments on reg.
func NewJobMetrics(reg prometheus.Registerer) (*JobMetrics, error) {
	labels := []string{"server", "job"}
	m := &JobMetrics{
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "job_last_success_timestamp_seconds",
			Help: "End time of the last successful run of the job, as a Unix timestamp."}, labels),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "job_duration_seconds",
			Help: "Duration of the last run of the job."}, labels),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "job_runs_total",
			Help: "Runs of the job since the process started."}, labels),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "job_failures_total",
			Help: "Failed runs of the job since the process started."}, labels),
	}
	for _, c := range []prometheus.Collector{m.lastSuccess, m.duration, m.runs, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Declare creates the series of a scheduled job at 0, so failures and
// rates exist before the first run.
func (m *JobMetrics) Declare(server, job string) {
	m.runs.WithLabelValues(server, job)
	m.failures.WithLabelValues(server, job)
}

// JobStarted implements Observer.
func (m *JobMetrics) JobStarted(server, job string) { m.Declare(server, job) }

// JobFinished implements Observer.
func (m *JobMetrics) JobFinished(server, job string, d time.Duration, err error) {
	m.runs.WithLabelValues(server, job).Inc()
	m.duration.WithLabelValues(server, job).Set(d.Seconds())
	if err != nil {
		m.failures.WithLabelValues(server, job).Inc()
		return
	}
	m.lastSuccess.WithLabelValues(server, job).SetToCurrentTime()
}

// Forget deletes every series of a server removed from the configuration.
func (m *JobMetrics) Forget(server string) {
	for _, v := range []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{m.lastSuccess, m.duration, m.runs, m.failures} {
		v.DeletePartialMatch(prometheus.Labels{"server": server})
	}
}
