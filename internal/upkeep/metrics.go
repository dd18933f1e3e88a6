package upkeep

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	gcRemoved      prometheus.Counter
	podGoneRemoved prometheus.Counter
	refreshed      prometheus.Counter
	cycles         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		gcRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_api_gc_removed_total",
			Help: "Registry entries removed by the leader because their run_date was older than REGISTRY_GC_AFTER.",
		}),
		podGoneRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_api_keepalive_removed_total",
			Help: "Pod-bound registry entries removed by the leader because their pod was gone, replaced, terminating or finished.",
		}),
		refreshed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_api_keepalive_refreshed_total",
			Help: "Run_date refreshes of pod-bound registry entries by the leader while their pods run.",
		}),
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_upkeep_cycles_total",
			Help: "Upkeep cycles (keepalive and GC) run by the leader, by result (ok, error).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.gcRemoved, err = register(reg, m.gcRemoved); err != nil {
		return nil, err
	}
	if m.podGoneRemoved, err = register(reg, m.podGoneRemoved); err != nil {
		return nil, err
	}
	if m.refreshed, err = register(reg, m.refreshed); err != nil {
		return nil, err
	}
	if m.cycles, err = register(reg, m.cycles); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector registered before:
// several keepers or electors (tests, a restarted server) may share a registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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
