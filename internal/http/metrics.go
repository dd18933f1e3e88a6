package httpapi

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/metrics"
)

// unmatchedRoute labels requests that match no route, so that scanners
// cannot grow the label set.
const unmatchedRoute = "unmatched"

// httpMetrics are the request metrics, with their series looked up once per
// route so that a request neither formats nor hashes labels.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// routes is written only while the server is built.
	routes map[routeKey]*routeMetrics
	// unmatched holds series for requests no route matched, by method label.
	unmatched map[string]*routeMetrics
}

// routeKey names a route: its HTTP method and chi pattern.
type routeKey struct {
	method  string
	pattern string
}

type routeMetrics struct {
	route, method string
	duration      prometheus.Observer
	requests      *prometheus.CounterVec
	mu            sync.RWMutex
	byStatus      map[int]prometheus.Counter
}

func newHTTPMetrics(reg *prometheus.Registry) (*httpMetrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "registry_api_http_requests_total",
		Help: "HTTP requests answered, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "registry_api_http_request_duration_seconds",
		Help: "Time to answer HTTP requests, by route pattern and method.",
		// Answers come from memory: most take microseconds.
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"route", "method"})
	var err error
	if requests, err = metrics.Register(reg, requests); err != nil {
		return nil, err
	}
	if duration, err = metrics.Register(reg, duration); err != nil {
		return nil, err
	}
	m := &httpMetrics{
		requests:  requests,
		duration:  duration,
		routes:    make(map[routeKey]*routeMetrics),
		unmatched: make(map[string]*routeMetrics),
	}
	for _, method := range append(knownMethods[:], otherMethod) {
		m.unmatched[method] = m.newRouteMetrics(unmatchedRoute, method)
	}
	return m, nil
}

func (m *httpMetrics) newRouteMetrics(route, method string) *routeMetrics {
	return &routeMetrics{
		route:    route,
		method:   method,
		duration: m.duration.WithLabelValues(route, method),
		requests: m.requests,
		byStatus: make(map[int]prometheus.Counter),
	}
}

func (m *httpMetrics) addRoute(method, pattern string) {
	m.routes[routeKey{method, pattern}] = m.newRouteMetrics(pattern, method)
}

// forRoute returns the series of method on the route pattern; an empty or
// unknown pattern is a request that matched no route.
func (m *httpMetrics) forRoute(method, pattern string) *routeMetrics {
	if rm := m.routes[routeKey{method, pattern}]; rm != nil {
		return rm
	}
	if rm := m.unmatched[method]; rm != nil {
		return rm
	}
	return m.unmatched[otherMethod]
}

func (rm *routeMetrics) observe(status int, seconds float64) {
	rm.duration.Observe(seconds)
	rm.mu.RLock()
	c := rm.byStatus[status]
	rm.mu.RUnlock()
	if c == nil {
		rm.mu.Lock()
		if c = rm.byStatus[status]; c == nil {
			c = rm.requests.WithLabelValues(rm.route, rm.method, strconv.Itoa(status))
			rm.byStatus[status] = c
		}
		rm.mu.Unlock()
	}
	c.Inc()
}

// knownMethods are the method labels kept as sent; any other is otherMethod.
var knownMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

const otherMethod = "OTHER"
