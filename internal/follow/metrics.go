package follow

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/metrics"
)

const (
	causeData   = "data"
	causeExpiry = "expiry"
)

// hubMetrics count followers and what moved their topics on.
type hubMetrics struct {
	open     *prometheus.GaugeVec
	rejected prometheus.Counter
	wakeups  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*hubMetrics, error) {
	m := &hubMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_api_followers",
			Help: "Open event streams (kind=stream) and blocked queries (kind=blocking).",
		}, []string{"kind"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_api_followers_rejected_total",
			Help: "Streams and blocking queries refused with 503 beyond REGISTRY_MAX_FOLLOWERS.",
		}),
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_follow_wakeups_total",
			Help: "Changes of a followed route table that woke its followers, by cause: data (a new snapshot) or expiry (an instance's TTL ran out).",
		}, []string{"cause"}),
	}
	for _, kind := range []string{"blocking", "stream"} {
		m.open.WithLabelValues(kind)
	}
	for _, c := range []string{causeData, causeExpiry} {
		m.wakeups.WithLabelValues(c)
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.open, err = metrics.Register(reg, m.open); err != nil {
		return nil, err
	}
	if m.rejected, err = metrics.Register(reg, m.rejected); err != nil {
		return nil, err
	}
	if m.wakeups, err = metrics.Register(reg, m.wakeups); err != nil {
		return nil, err
	}
	return m, nil
}
