package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// DefaultListenAddress is Cellar's exporter port, on loopback only.
const DefaultListenAddress = "127.0.0.1:9533"

// HTTPOptions configure the endpoint.
type HTTPOptions struct {
	// ListenAddresses default to DefaultListenAddress.
	ListenAddresses []string
	// WebConfigFile is an exporter-toolkit web config (TLS, basic auth,
	// rate limit); "" serves plain HTTP.
	WebConfigFile string
	// Timeout bounds one /metrics request (503 after it).
	Timeout time.Duration
	// Version and Revision identify the build: shown on the landing page
	// and exported as cellar_build_info (on self).
	Version  string
	Revision string
	Logger   *slog.Logger
}

// NewHandler serves /metrics from gatherer (the registry holding the
// Collector and JobMetrics; promhttp's own metrics go to self) and the
// landing page at /. It never touches http.DefaultServeMux.
func NewHandler(gatherer prometheus.Gatherer, self prometheus.Registerer, opts HTTPOptions) (http.Handler, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	metrics := promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            self,
		MaxRequestsInFlight: 4,
		Timeout:             opts.Timeout,
	})
	if self != nil {
		metrics = promhttp.InstrumentMetricHandler(self, metrics)
		if err := RegisterBuildInfo(self, opts.Version, opts.Revision); err != nil {
			return nil, err
		}
	}
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "Cellar exporter",
		Description: "Cellar backup checks and catalog state for Prometheus",
		Version:     opts.Version,
		Links:       []web.LandingLinks{{Address: "/metrics", Text: "Metrics"}},
	})
	if err != nil {
		return nil, fmt.Errorf("exporter landing page: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	mux.Handle("/", landing)
	return mux, nil
}

// Serve runs the endpoint until ctx ends, then shuts it down gracefully.
// The web config file is validated first so a bad file fails at start.
func Serve(ctx context.Context, h http.Handler, opts HTTPOptions) error {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	addrs := opts.ListenAddresses
	if len(addrs) == 0 {
		addrs = []string{DefaultListenAddress}
	}
	if opts.WebConfigFile != "" {
		if err := web.Validate(opts.WebConfigFile); err != nil {
			return fmt.Errorf("exporter web config %s: %w", opts.WebConfigFile, err)
		}
	}
	systemd := false
	cfgFile := opts.WebConfigFile
	flags := &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &cfgFile}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, flags, logger) }()
	select {
	case err := <-errc:
		return fmt.Errorf("exporter on %v: %w", addrs, err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("exporter shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("exporter on %v: %w", addrs, err)
	}
	return nil
}
