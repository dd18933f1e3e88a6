package httpapi

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/metrics"
	"github.com/acme/registry-api/internal/model"
)

// admission holds the per-replica limits every request passes before it is
// routed: the shape of its target, the deadline of its body, the cap on
// concurrent requests and the budget of the bytes their bodies hold.
type admission struct {
	maxInFlight  int64
	bodyTimeout  time.Duration
	maxBodyBytes int64
	inFlight     atomic.Int64
	bodyBytes    atomic.Int64
	metrics      *admissionMetrics
}

// budgetedBody counts the bytes read from a request's body against the
// replica's body budget, until its request is answered. A read that takes
// the replica past the budget fails as overloaded: what is held is held by
// bodies still arriving, which the budget frees as they are answered.
type budgetedBody struct {
	io.ReadCloser
	a    *admission
	w    http.ResponseWriter
	held int64
}

func (b *budgetedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.held += int64(n)
	if total := b.a.bodyBytes.Add(int64(n)); total > b.a.maxBodyBytes && n > 0 {
		b.a.metrics.shed.Inc()
		// What remains of this body is not worth waiting for: the server's
		// drain of it fails at once and the connection closes.
		_ = http.NewResponseController(b.w).SetReadDeadline(time.Now())
		return 0, model.Errorf(model.CodeOverloaded,
			"this replica holds %d bytes of request bodies, its limit; retry in a second", b.a.maxBodyBytes)
	}
	return n, err
}

func (b *budgetedBody) release() { b.a.bodyBytes.Add(-b.held) }

// admit applies admission to every request. A request beyond the cap is
// answered 503 at once rather than queued: a queue would hold its memory
// and answer it late, when its client may have given up. Probes and
// metrics are never shed, so that an overloaded replica is seen as such
// rather than restarted.
func (s *server) admit(next http.Handler) http.Handler {
	a := s.admission
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkTarget(r); err != nil {
			writeProblem(w, r, err)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			// Cleared by readBody once the body is in; left on for a body
			// no handler reads, it bounds the server's drain of it too.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.bodyTimeout))
			// In place, as http.MaxBytesReader is used: the server
			// closes and drains the body it handed in, not r.Body.
			body := &budgetedBody{ReadCloser: r.Body, a: a, w: w}
			defer body.release()
			r.Body = body
		}
		if exemptFromCap(r) {
			next.ServeHTTP(w, r)
			return
		}
		if n := a.inFlight.Add(1); n > a.maxInFlight {
			a.inFlight.Add(-1)
			a.metrics.shed.Inc()
			writeProblem(w, r, model.Errorf(model.CodeOverloaded,
				"this replica is answering %d requests, its limit; retry in a second", a.maxInFlight))
			return
		}
		a.metrics.inFlight.Inc()
		defer func() {
			a.inFlight.Add(-1)
			a.metrics.inFlight.Dec()
		}()
		next.ServeHTTP(w, r)
	})
}

// exemptFromCap reports whether r is one of the requests the in-flight cap
// does not count: the probes and the metrics, and the event streams and
// blocked queries, which stay open for minutes and have their own cap
// (Deps.MaxFollowers): counted here, a few hundred gateways following the
// registry would shed every ordinary read.
func exemptFromCap(r *http.Request) bool {
	if longLived(r) {
		return true
	}
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

type admissionMetrics struct {
	inFlight prometheus.Gauge
	shed     prometheus.Counter
}

func newAdmissionMetrics(reg prometheus.Registerer) (*admissionMetrics, error) {
	inFlight, err := metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "registry_api_http_in_flight_requests",
		Help: "HTTP requests being answered that count against REGISTRY_MAX_IN_FLIGHT.",
	}))
	if err != nil {
		return nil, err
	}
	shed, err := metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "registry_api_http_shed_total",
		Help: "HTTP requests answered 503 overloaded because REGISTRY_MAX_IN_FLIGHT requests were in flight, or because request bodies held the replica's body budget.",
	}))
	if err != nil {
		return nil, err
	}
	return &admissionMetrics{inFlight: inFlight, shed: shed}, nil
}
