package write

import (
	"github.com/prometheus/client_golang/prometheus"

	sharedmetrics "github.com/acme/registry-api/internal/metrics"
)

type metrics struct {
	storeWrites *prometheus.CounterVec
	ops         *prometheus.CounterVec
	batchSize   prometheus.Histogram
	conflicts   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		storeWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_store_writes_total",
			Help: "Writes of registry ConfigMaps to the API server, by op (update, create) and result.",
		}, []string{"op", "result"}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_write_ops_total",
			Help: "Registry write operations, by op (register, register_version, heartbeat, deregister) and result (ok or an error code).",
		}, []string{"op", "result"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "registry_api_write_batch_size",
			Help:    "Operations applied together in one read-modify-write of a registry ConfigMap.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_api_write_conflicts_total",
			Help: "Writes of registry ConfigMaps refused with 409 Conflict, each retried on a fresh copy.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	// Several writers (tests, a restarted server) may share one registry.
	var err error
	if m.storeWrites, err = sharedmetrics.Register(reg, m.storeWrites); err != nil {
		return nil, err
	}
	if m.ops, err = sharedmetrics.Register(reg, m.ops); err != nil {
		return nil, err
	}
	if m.batchSize, err = sharedmetrics.Register(reg, m.batchSize); err != nil {
		return nil, err
	}
	if m.conflicts, err = sharedmetrics.Register(reg, m.conflicts); err != nil {
		return nil, err
	}
	return m, nil
}
