package upkeep

import (
	"github.com/prometheus/client_golang/prometheus"

	sharedmetrics "github.com/acme/registry-api/internal/metrics"
)

type metrics struct {
	gcRemoved      prometheus.Counter
	podGoneRemoved prometheus.Counter
	refreshed      prometheus.Counter
	versionsKept   prometheus.Counter
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
		versionsKept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_api_version_refreshed_total",
			Help: "Run_date refreshes of version registrations by the leader while their Service has ready endpoints (REGISTRY_VERSION_REFRESH).",
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
	if m.gcRemoved, err = sharedmetrics.Register(reg, m.gcRemoved); err != nil {
		return nil, err
	}
	if m.podGoneRemoved, err = sharedmetrics.Register(reg, m.podGoneRemoved); err != nil {
		return nil, err
	}
	if m.refreshed, err = sharedmetrics.Register(reg, m.refreshed); err != nil {
		return nil, err
	}
	if m.versionsKept, err = sharedmetrics.Register(reg, m.versionsKept); err != nil {
		return nil, err
	}
	if m.cycles, err = sharedmetrics.Register(reg, m.cycles); err != nil {
		return nil, err
	}
	return m, nil
}
