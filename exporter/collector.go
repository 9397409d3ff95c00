// Package exporter publishes Cellar's checks and catalog state to
// Prometheus: a Collector that evaluates the check registry at scrape time
// over every configured server, job-event instruments, and the HTTP
// endpoint (exporter-toolkit: TLS and basic auth through --web.config.file).
package exporter

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cellar-backup/cellar/checks"
)

const namespace = "cellar"

// Targets is the set of servers to collect; the daemon swaps its content on
// reload. server.Set (or any list of *server.Server) satisfies it through a
// small adapter.
type Targets interface {
	Targets() []checks.Target
}

// TargetList is a fixed Targets.
type TargetList []checks.Target

// Targets returns the list.
func (l TargetList) Targets() []checks.Target { return l }

// Options tune the collector.
type Options struct {
	// ScrapeTimeout bounds one collection; probes still running then are
	// reported UNKNOWN (default config.DefaultScrapeTimeout, 10 s).
	ScrapeTimeout time.Duration
	// MinProbeInterval: results younger than this are served from cache
	// (0 = always re-run).
	MinProbeInterval time.Duration
	Logger           *slog.Logger
	// Now is the cache clock (nil = time.Now).
	Now func() time.Time
}

// Collector evaluates the checks of every target at scrape time. It keeps
// no metric state of its own (only the probe cache), so concurrent scrapes
// are safe and removed servers disappear.
type Collector struct {
	cache   *checks.Cache
	targets Targets
	timeout time.Duration
	logger  *slog.Logger

	status, duration, up, info, scrapeDuration, oldest *prometheus.Desc
	gauges                                             []gaugeDesc
}

type gaugeDesc struct {
	g    checks.Gauge
	desc *prometheus.Desc
}

// NewCollector builds the collector for reg over targets.
func NewCollector(reg *checks.Registry, targets Targets, opts Options) *Collector {
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{
		cache:   newCache(reg, opts),
		targets: targets,
		timeout: opts.ScrapeTimeout,
		logger:  opts.Logger,
		status: prometheus.NewDesc(namespace+"_check_status",
			"Outcome of a Cellar check (Barman check name in snake_case) as a Nagios code: 0 OK, 1 warning, 2 critical, 3 unknown. Results may be cached for the configured minimum probe interval.",
			[]string{"server", "check"}, nil),
		duration: prometheus.NewDesc(namespace+"_check_duration_seconds",
			"Time the last evaluation of the check took.", []string{"server", "check"}, nil),
		up: prometheus.NewDesc(namespace+"_up",
			"1 if every check of the server could be evaluated (none unknown: no timeout, catalog readable), else 0.",
			[]string{"server"}, nil),
		info: prometheus.NewDesc(namespace+"_server_info",
			"Configuration of a Cellar server (value 1).",
			[]string{"server", "backup_method", "archiver", "streaming_archiver", "active", "passive", "postgresql_version"}, nil),
		oldest: prometheus.NewDesc(namespace+"_check_oldest_result_timestamp_seconds",
			"When the oldest check result served for the server was evaluated. Results older than the minimum probe interval are re-evaluated in the background while the previous ones are served.",
			[]string{"server"}, nil),
		scrapeDuration: prometheus.NewDesc(namespace+"_scrape_duration_seconds",
			"Time this scrape spent evaluating the checks of all servers.", nil, nil),
	}
	for _, g := range reg.Gauges() {
		labels := []string{"server"}
		if g.Label != "" {
			labels = append(labels, g.Label)
		}
		c.gauges = append(c.gauges, gaugeDesc{g: g, desc: prometheus.NewDesc(namespace+"_"+g.Name, g.Help, labels, nil)})
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.status
	ch <- c.duration
	ch <- c.up
	ch <- c.info
	ch <- c.scrapeDuration
	ch <- c.oldest
	for _, g := range c.gauges {
		ch <- g.desc
	}
}

// Forget drops a removed server's cached results.
func (c *Collector) Forget(server string) { c.cache.Forget(server) }

// Collect implements prometheus.Collector. A server's first evaluation
// runs during the scrape (all servers concurrently, under one scrape
// deadline); afterwards a scrape serves the latest results at once and
// re-evaluates stale probes in the background, so scrape latency does not
// depend on how long PostgreSQL takes to accept connections.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	// Collect has no context (client_golang #1538): the scrape deadline
	// is our own.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	targets := c.targets.Targets()
	all := make([][]checks.Result, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { all[i] = c.cache.Serve(ctx, t, c.timeout) })
	}
	wg.Wait()
	for i, t := range targets {
		c.collectServer(ch, t, all[i])
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeDuration, prometheus.GaugeValue, time.Since(start).Seconds())
}

// stateSaver is a target that can persist its catalog caches
// (checktarget.Target), so that a restarted exporter starts warm.
type stateSaver interface{ SaveState() error }

func newCache(reg *checks.Registry, opts Options) *checks.Cache {
	c := checks.NewCache(reg, opts.MinProbeInterval, opts.Now)
	c.AfterRun(func(t checks.Target) {
		if s, ok := t.(stateSaver); ok {
			if err := s.SaveState(); err != nil {
				opts.Logger.Debug("save probe state", "server", t.Name(), "err", err)
			}
		}
	})
	return c
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (c *Collector) collectServer(ch chan<- prometheus.Metric, t checks.Target, results []checks.Result) {
	name := t.Name()
	cfg := t.Config()
	version := ""
	if id, err := t.Identity(); err == nil && id != nil {
		version = id.Version
	}
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, name, string(cfg.BackupMethod),
		onOff(cfg.Archiver), onOff(cfg.StreamingArchiver), strconv.FormatBool(cfg.Active), strconv.FormatBool(cfg.IsPassive()), version)
	up := 1.0
	values := map[string]float64{}
	var oldest time.Time
	for _, r := range results {
		if !r.At.IsZero() && (oldest.IsZero() || r.At.Before(oldest)) {
			oldest = r.At
		}
		if r.Status == checks.Unknown {
			up = 0
			c.logger.Debug("check unknown", "server", name, "check", r.Key, "hint", r.Hint)
		}
		ch <- prometheus.MustNewConstMetric(c.status, prometheus.GaugeValue, float64(r.Status), name, r.Key)
		ch <- prometheus.MustNewConstMetric(c.duration, prometheus.GaugeValue, r.Duration.Seconds(), name, r.Key)
		for k, v := range r.Values {
			values[k] = v
		}
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, name)
	if !oldest.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, float64(oldest.UnixNano())/1e9, name)
	}
	labelled := dynamicSeries(values)
	for _, g := range c.gauges {
		switch {
		case g.g.Label == "":
			if v, ok := values[g.g.Name]; ok {
				ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, name)
			}
		case g.g.LabelValues == nil:
			for _, lv := range labelled[g.g.Name] {
				ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, values[checks.SeriesKey(g.g.Name, lv)], name, lv)
			}
		default:
			for _, lv := range g.g.LabelValues {
				if v, ok := values[checks.SeriesKey(g.g.Name, lv)]; ok {
					ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, name, lv)
				}
			}
		}
	}
}

// dynamicSeries groups the label values of the labelled series in values
// by gauge name, for gauges whose label values are not known in advance
// (backup ids).
func dynamicSeries(values map[string]float64) map[string][]string {
	out := map[string][]string{}
	for k := range values {
		if name, lv, ok := checks.ParseSeriesKey(k); ok {
			out[name] = append(out[name], lv)
		}
	}
	return out
}
