package main

import (
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
			col := exporter.NewCollector(checks.Default().WithLogger(g.logger), exporter.TargetList(checktarget.All(srvs)), exporter.Options{
				ScrapeTimeout:    cfg.Global.Web.ScrapeTimeout,
				MinProbeInterval: cfg.Global.Web.MinProbeInterval,
				Logger:           g.logger,
			})
			if err := reg.Register(col); err != nil {
				return err
			}
			// Warm the catalog caches now, so that the first scrape does not pay
			// for reading every backup.info and the whole xlog.db.
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
