package auth

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	if err := reg.Register(m.results); err != nil {
		var already prometheus.AlreadyRegisteredError
		if !errors.As(err, &already) {
			return nil, err
		}
		existing, ok := already.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, err
		}
		m.results = existing
	}
	return m, nil
}
