// Package metrics holds what every component needs to expose Prometheus
// metrics on the service's one registry.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register adds c to reg and returns it, or returns the equal collector that
// was registered before: several components of one kind (a restarted server,
// tests) may share a registry and must then count into the same series.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
