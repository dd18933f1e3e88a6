package watch

import (
	"github.com/prometheus/client_golang/prometheus"

	sharedmetrics "github.com/acme/registry-api/internal/metrics"
	"github.com/acme/registry-api/internal/model"
)

type metrics struct {
	pollDuration  prometheus.Histogram
	pollErrors    *prometheus.CounterVec
	entriesParsed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, p *Poller) (*metrics, error) {
	m := &metrics{
		pollDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "registry_api_poll_duration_seconds",
			Help:    "Time to read the registry ConfigMaps of every watched namespace: the LIST of their metadata, and the ConfigMaps that changed.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		pollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_poll_errors_total",
			Help: "Failed reads of registry ConfigMaps, by namespace (* for all).",
		}, []string{"namespace"}),
		entriesParsed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_api_entries_parsed_total",
			Help: "Registry entries parsed; unchanged ConfigMaps and entries are not parsed again.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.pollDuration, err = sharedmetrics.Register(reg, m.pollDuration); err != nil {
		return nil, err
	}
	if m.pollErrors, err = sharedmetrics.Register(reg, m.pollErrors); err != nil {
		return nil, err
	}
	if m.entriesParsed, err = sharedmetrics.Register(reg, m.entriesParsed); err != nil {
		return nil, err
	}
	// The first poller on a registry reports the snapshot gauges; one service
	// has one poller.
	if _, err := sharedmetrics.Register(reg, prometheus.Collector(&snapshotCollector{p: p})); err != nil {
		return nil, err
	}
	return m, nil
}

var (
	snapshotAgeDesc = prometheus.NewDesc("registry_api_snapshot_age_seconds",
		"Seconds since the oldest watched namespace was last read successfully.", nil, nil)
	lastSyncDesc = prometheus.NewDesc("registry_api_last_sync_timestamp_seconds",
		"Unix time of the last successful read, by namespace (* for all).", []string{"namespace"}, nil)
	entriesDesc = prometheus.NewDesc("registry_api_entries",
		"Registry entries by env and state: alive, stale, invalid, warning.", []string{"env", "state"}, nil)
	conflictsDesc = prometheus.NewDesc("registry_api_method_conflicts",
		"Methods claimed by more than one app, by env.", []string{"env"}, nil)
	futureDesc = prometheus.NewDesc("registry_api_entries_run_date_in_future",
		"Registry entries whose run_date was more than REGISTRY_MAX_CLOCK_SKEW ahead of this replica's clock when it read them, by env.", []string{"env"}, nil)
)

// snapshotCollector computes gauges from the current snapshot at scrape time,
// so liveness in metrics follows the clock like it does in responses.
type snapshotCollector struct{ p *Poller }

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- snapshotAgeDesc
	ch <- lastSyncDesc
	ch <- entriesDesc
	ch <- conflictsDesc
	ch <- futureDesc
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.p.Snapshot()
	now := c.p.opts.Now()
	if synced := snap.SyncedAt(); !synced.IsZero() {
		ch <- prometheus.MustNewConstMetric(snapshotAgeDesc, prometheus.GaugeValue, now.Sub(synced).Seconds())
	}
	for ns, t := range snap.NamespaceSyncedAt {
		ch <- prometheus.MustNewConstMetric(lastSyncDesc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, namespaceLabel(ns))
	}
	for _, name := range snap.EnvNames {
		env := snap.Envs[name]
		counts := env.Counts(now, c.p.opts.TTL)
		for state, v := range map[string]int{
			"alive":   counts.Alive,
			"stale":   counts.Stale,
			"invalid": len(env.Invalid),
			"warning": len(env.Warnings),
		} {
			ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(v), name, state)
		}
		ch <- prometheus.MustNewConstMetric(conflictsDesc, prometheus.GaugeValue, float64(len(env.Conflicts)), name)
		future := 0
		for _, w := range env.Warnings {
			if w.Reason == model.WarnRunDateInFuture {
				future++
			}
		}
		ch <- prometheus.MustNewConstMetric(futureDesc, prometheus.GaugeValue, float64(future), name)
	}
}

var _ prometheus.Collector = (*snapshotCollector)(nil)
var _ model.SnapshotSource = (*Poller)(nil)
