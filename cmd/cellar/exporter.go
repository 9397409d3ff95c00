package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/checktarget"
	"github.com/cellar-backup/cellar/config"
	"github.com/cellar-backup/cellar/exporter"
)

type exporterOptions struct {
	listen    []string
	webConfig string
}

func newExporterCommand(g *globalOptions) *cobra.Command {
	var o exporterOptions
	c := &cobra.Command{
		Use:   "exporter",
		Short: "Serve the checks and catalog gauges as Prometheus metrics",
		Long: "Serves /metrics (and a landing page at /) on 127.0.0.1:9533 unless configured otherwise.\n" +
			"TLS and basic authentication come from an exporter-toolkit web configuration file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			srvs, err := g.servers(cfg.ServerNames())
			if err != nil {
				return err
			}
			targets := checktarget.All(srvs)
			loadProbeState(targets, g.logger)
			m, err := newMetrics(g, cfg, exporter.TargetList(targets))
			if err != nil {
				return err
			}
			h, hopts, err := m.handler(g, cfg, o.listen, o.webConfig)
			if err != nil {
				return err
			}
			return exporter.Serve(cmd.Context(), h, hopts)
		},
	}
	c.Flags().StringArrayVar(&o.listen, "web.listen-address", nil, "address to listen on (default global.web.listen_address, 127.0.0.1:9533)")
	c.Flags().StringVar(&o.webConfig, "web.config.file", "", "exporter-toolkit web configuration file (TLS, basic auth)")
	return c
}

// loadProbeState primes the targets' catalog caches from the state their
// previous evaluations saved (checktarget.Target.SaveState), concurrently,
// so that a restarted exporter does not re-read every backup.info and
// xlog.db. A missing, stale or unreadable state only means a cold start.
func loadProbeState(targets []checks.Target, log *slog.Logger) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for _, t := range targets {
		ct, ok := t.(*checktarget.Target)
		if !ok {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := ct.LoadState(); err != nil {
				log.Info("probe state not used: catalog caches start cold", "server", ct.Name(), "err", err)
			}
		})
	}
	wg.Wait()
}

// metrics are the exporter's registries: reg holds the checks collector
// (and the daemon's job metrics), self the process's own metrics.
type metrics struct {
	reg, self *prometheus.Registry
	col       *exporter.Collector
}

// newMetrics registers the checks collector over targets and starts the
// first evaluation of every server at once, so that the first scrape
// finds the catalog caches warm and PostgreSQL already asked.
func newMetrics(g *globalOptions, cfg *config.Config, targets exporter.Targets) (*metrics, error) {
	m := &metrics{reg: prometheus.NewRegistry(), self: prometheus.NewRegistry()}
	m.self.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.col = exporter.NewCollector(checks.Default().WithLogger(g.logger), targets, exporter.Options{
		ScrapeTimeout:    cfg.Global.Web.ScrapeTimeout,
		MinProbeInterval: cfg.Global.Web.MinProbeInterval,
		Logger:           g.logger,
	})
	if err := m.reg.Register(m.col); err != nil {
		return nil, fmt.Errorf("registering collector: %w", err)
	}
	go func() { _, _ = m.reg.Gather() }()
	return m, nil
}

// handler is the HTTP handler serving m on listen (default
// global.web.listen_address) with webConfig (default global.web.config_file),
// and the options exporter.Serve needs. It logs where it will listen.
func (m *metrics) handler(g *globalOptions, cfg *config.Config, listen []string, webConfig string) (http.Handler, exporter.HTTPOptions, error) {
	if len(listen) == 0 {
		listen = []string{cfg.Global.Web.ListenAddress}
	}
	if webConfig == "" {
		webConfig = cfg.Global.Web.ConfigFile
	}
	hopts := exporter.HTTPOptions{ListenAddresses: listen, WebConfigFile: webConfig, Timeout: cfg.Global.Web.ScrapeTimeout, Version: version, Revision: buildRevision(), Logger: g.logger}
	h, err := exporter.NewHandler(prometheus.Gatherers{m.reg, m.self}, m.self, hopts)
	if err != nil {
		return nil, hopts, err
	}
	g.logger.Info("exporter listening", "addresses", listen)
	return h, hopts, nil
}
