package auth

import (
	"github.com/prometheus/client_golang/prometheus"

	sharedmetrics "github.com/acme/registry-api/internal/metrics"
)

type metrics struct {
	results *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_auth_requests_total",
			Help: "Bearer tokens checked, by result: cached (accepted from the cache), authenticated (TokenReview accepted), rejected, missing, error (TokenReview failed).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.results, err = sharedmetrics.Register(reg, m.results); err != nil {
		return nil, err
	}
	return m, nil
}
