package main

import (
	"log/slog"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/cellar-backup/cellar/checks"
	"github.com/cellar-backup/cellar/checktarget"
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
			reg := prometheus.NewRegistry()
			self := prometheus.NewRegistry()
			self.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			targets := checktarget.All(srvs)
			loadProbeState(targets, g.logger)
			col := exporter.NewCollector(checks.Default().WithLogger(g.logger), exporter.TargetList(targets), exporter.Options{
				ScrapeTimeout:    cfg.Global.Web.ScrapeTimeout,
				MinProbeInterval: cfg.Global.Web.MinProbeInterval,
				Logger:           g.logger,
			})
			if err := reg.Register(col); err != nil {
				return err
			}
			// Evaluate every server now, so that the first scrape finds the
			// catalog caches warm and PostgreSQL already asked.
			go func() { _, _ = reg.Gather() }()
			listen := o.listen
			if len(listen) == 0 {
				listen = []string{cfg.Global.Web.ListenAddress}
			}
			webCfg := o.webConfig
			if webCfg == "" {
				webCfg = cfg.Global.Web.ConfigFile
			}
			hopts := exporter.HTTPOptions{ListenAddresses: listen, WebConfigFile: webCfg, Timeout: cfg.Global.Web.ScrapeTimeout, Version: version, Logger: g.logger}
			h, err := exporter.NewHandler(prometheus.Gatherers{reg, self}, self, hopts)
			if err != nil {
				return err
			}
			g.logger.Info("exporter listening", "addresses", listen)
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
