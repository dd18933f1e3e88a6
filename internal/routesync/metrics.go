package routesync

import (
	"github.com/prometheus/client_golang/prometheus"

	sharedmetrics "github.com/acme/registry-api/internal/metrics"
)

type metrics struct {
	served      *prometheus.GaugeVec
	applied     *prometheus.CounterVec
	deleted     *prometheus.CounterVec
	deferred    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	foreign     *prometheus.GaugeVec
	paused      prometheus.Gauge
	lastSuccess prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		served: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_api_sync_kind_served",
			Help: "1 if the API server serves the kind that route sync manages, 0 if not (its CRD is not installed): the sync leaves it alone.",
		}, []string{"kind"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_sync_applied_total",
			Help: "Objects server-side applied by route sync, by kind.",
		}, []string{"kind"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_sync_deleted_total",
			Help: "Managed objects deleted by route sync after their methods had no live instance for the grace period, by kind.",
		}, []string{"kind"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_sync_deferred_total",
			Help: "Updates route sync put off because they would remove routes within a grace period of a new term or of the registry's data coming back, by kind.",
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_sync_errors_total",
			Help: "Failed route sync calls to the API server, by kind and operation (list, get, apply, delete, build).",
		}, []string{"kind", "op"}),
		foreign: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_api_sync_foreign_objects",
			Help: "Objects route sync would write whose name is held by an object it does not manage (no app.kubernetes.io/managed-by=registry-api label), by kind; left alone.",
		}, []string{"kind"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_api_sync_paused",
			Help: "1 while route sync waits because the registry's data is not fresh (the API server is unreachable), 0 otherwise.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "registry_api_sync_last_success_timestamp_seconds",
			Help: "When route sync last found every served kind in step with the route table, or brought it there, as a Unix time.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, c := range []**prometheus.GaugeVec{&m.served, &m.foreign} {
		if *c, err = sharedmetrics.Register(reg, *c); err != nil {
			return nil, err
		}
	}
	for _, c := range []**prometheus.CounterVec{&m.applied, &m.deleted, &m.deferred, &m.errors} {
		if *c, err = sharedmetrics.Register(reg, *c); err != nil {
			return nil, err
		}
	}
	if m.paused, err = sharedmetrics.Register(reg, m.paused); err != nil {
		return nil, err
	}
	if m.lastSuccess, err = sharedmetrics.Register(reg, m.lastSuccess); err != nil {
		return nil, err
	}
	return m, nil
}
