package exporter

import (
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterBuildInfo registers cellar_build_info{version,revision,goversion}
// with value 1 on reg, so that dashboards and alerts can tell which build
// of Cellar a target runs (and notice a mixed fleet).
func RegisterBuildInfo(reg prometheus.Registerer, version, revision string) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "Build of the running Cellar (value 1): release version, VCS revision and the Go version it was built with.",
		ConstLabels: prometheus.Labels{
			"version":   version,
			"revision":  revision,
			"goversion": runtime.Version(),
		},
	})
	g.Set(1)
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("registering cellar_build_info: %w", err)
	}
	return nil
}
