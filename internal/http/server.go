// Package httpapi serves the registry over HTTP: the read API over the current
// snapshot, the write API that registers, heartbeats and deregisters
// instances, the probes, the metrics and the API document.
package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/acme/registry-api/internal/auth"
	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/follow"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/routesync"
	"github.com/acme/registry-api/internal/write"
)

// Deps is what the server needs; its zero values are safe except Snapshots.
type Deps struct {
	// Log receives one line per request and every internal error.
	Log zerolog.Logger
	// Snapshots hands out the current registry snapshot.
	Snapshots model.SnapshotSource
	// Now is the clock liveness is judged by; nil means time.Now.
	Now func() time.Time
	// TTL is how old a heartbeat may be for its instance to be alive; zero
	// means the library's 10 s.
	TTL time.Duration
	// Prometheus receives the HTTP metrics and is what /metrics serves; nil
	// means a private one.
	Prometheus *prometheus.Registry
	// Writer applies registrations, heartbeats and deregistrations; nil
	// refuses every write with 405 read_only.
	Writer Writer
	// ReadOnly refuses every write with 405 read_only, Writer or not.
	ReadOnly bool
	// WriteNamespace is where a write to an env that no watched namespace
	// holds yet goes; empty makes such writes name one with ?namespace=.
	WriteNamespace string
	// Auth authenticates callers by their bearer token; nil serves without
	// authentication (REGISTRY_AUTH=none).
	Auth Authenticator
	// Policy decides what an authenticated caller may write.
	Policy auth.Policy
	// ReadAuth requires a valid token for the read API too; probes, metrics
	// and the API document stay open.
	ReadAuth bool
	// MaxInFlight caps the requests a replica answers at once; beyond it
	// the answer is 503 overloaded. Zero means 512.
	MaxInFlight int
	// BodyReadTimeout bounds how long a request body may take to arrive;
	// zero means 10 s.
	BodyReadTimeout time.Duration
	// Follow judges the followed route tables; nil makes one over
	// Snapshots with Now, TTL and MaxFollowers.
	Follow *follow.Hub
	// MaxFollowers caps open event streams and blocked queries together
	// when the server makes its own Follow; beyond it they answer 503
	// too_many_followers. Zero means follow.DefaultMaxFollowers.
	MaxFollowers int
	// Drain, once closed, ends event streams and blocked queries: the
	// server is shutting down (http.Server.RegisterOnShutdown closes it).
	Drain <-chan struct{}
	// MaxBodyBytes bounds the bytes of request bodies the replica holds at
	// once; past it a body's request is answered 503 overloaded. Zero
	// means 32 MiB.
	MaxBodyBytes int64
	// Gateway is the parent of exported GRPCRoutes when a request names
	// none (?gateway=); nil leaves them unattached.
	Gateway *export.ParentRef
	// IstioVersionHeader, when set, is the header whose value selects a
	// version's subset in exported VirtualServices; empty adds no such routes.
	IstioVersionHeader string
	// RouteSync, when route sync is on, reports which of its kinds the API
	// server serves, for GET /v1/envs/{env}; nil when it is off.
	RouteSync func() []routesync.KindStatus
}

// Writer is the write path the write API needs; *write.Writer is one.
// Guards judge the entry a write would change, on the copy it replaces.
type Writer interface {
	Register(ctx context.Context, r write.Registration, guards ...write.Guard) (write.Result, error)
	RegisterVersion(ctx context.Context, r write.Registration, guards ...write.Guard) (write.Result, error)
	Heartbeat(ctx context.Context, namespace, env, appID string, leaseID int64, guards ...write.Guard) (write.Result, error)
	Deregister(ctx context.Context, namespace, env, appID string, leaseID int64, guards ...write.Guard) error
}

// Authenticator tells who holds a bearer token; *auth.Authenticator is one.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Identity, error)
}

var _ Authenticator = (*auth.Authenticator)(nil)

var _ Writer = (*write.Writer)(nil)

func (d *Deps) validate() error {
	if d.Snapshots == nil {
		return errors.New("httpapi: Deps.Snapshots is required")
	}
	if d.MaxFollowers < 0 {
		return errors.New("httpapi: Deps.MaxFollowers must not be negative")
	}
	if d.TTL < 0 {
		return errors.New("httpapi: Deps.TTL must not be negative")
	}
	if d.MaxInFlight < 0 || d.BodyReadTimeout < 0 || d.MaxBodyBytes < 0 {
		return errors.New("httpapi: Deps.MaxInFlight, Deps.BodyReadTimeout and Deps.MaxBodyBytes must not be negative")
	}
	if d.IstioVersionHeader != "" && !export.ValidHeaderName(d.IstioVersionHeader) {
		return fmt.Errorf("httpapi: Deps.IstioVersionHeader %q is not a lowercase header name", d.IstioVersionHeader)
	}
	if d.MaxBodyBytes == 0 {
		d.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if d.MaxInFlight == 0 {
		d.MaxInFlight = DefaultMaxInFlight
	}
	if d.BodyReadTimeout == 0 {
		d.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if d.ReadAuth && d.Auth == nil {
		return errors.New("httpapi: Deps.ReadAuth needs Deps.Auth")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.TTL == 0 {
		d.TTL = model.DefaultTTL
	}
	if d.Prometheus == nil {
		d.Prometheus = prometheus.NewRegistry()
	}
	return nil
}

// server is the API's http.Handler; it keeps what handlers and middleware
// share, all of it built once in NewServer.
type server struct {
	log    zerolog.Logger
	router *chi.Mux
	// handler is the router behind what every request passes first.
	handler http.Handler
	spec    *apiSpec
	metrics *httpMetrics
	follow  *following
	// prometheus is what /metrics serves.
	prometheus *prometheus.Registry
	// admission is shared by every request; see admit.
	admission *admission
	// answers keeps the answers of repeated small reads; see answers.go.
	answers *answers
	// retryHeartbeat is the Retry-After of retryHeartbeat problems.
	retryHeartbeat []string
}

// NewServer builds the API's handler: every route, request validation against
// the embedded openapi.yaml, request logs and metrics.
func NewServer(deps Deps) (http.Handler, error) {
	s, err := newServer(deps)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(deps Deps) (*server, error) {
	if err := deps.validate(); err != nil {
		return nil, err
	}
	spec, err := loadSpec()
	if err != nil {
		return nil, err
	}
	metrics, err := newHTTPMetrics(deps.Prometheus)
	if err != nil {
		return nil, err
	}
	am, err := newAdmissionMetrics(deps.Prometheus)
	if err != nil {
		return nil, err
	}
	sm, err := newStreamMetrics(deps.Prometheus)
	if err != nil {
		return nil, err
	}
	replayed, err := newAnswerMetrics(deps.Prometheus)
	if err != nil {
		return nil, err
	}
	hub := deps.Follow
	if hub == nil {
		hub, err = follow.New(follow.Options{Source: deps.Snapshots, Now: deps.Now, TTL: deps.TTL,
			MaxFollowers: deps.MaxFollowers, Registerer: deps.Prometheus})
		if err != nil {
			return nil, err
		}
	}
	s := &server{
		log:     deps.Log,
		router:  chi.NewRouter(),
		spec:    spec,
		metrics: metrics,
		admission: &admission{
			maxInFlight:  int64(deps.MaxInFlight),
			bodyTimeout:  deps.BodyReadTimeout,
			maxBodyBytes: deps.MaxBodyBytes,
			metrics:      am,
		},
		answers:        &answers{src: deps.Snapshots, metrics: metrics, now: deps.Now, ttl: deps.TTL, replayed: replayed},
		prometheus:     deps.Prometheus,
		retryHeartbeat: heartbeatRetryAfter(deps.TTL),
		follow: &following{hub: hub, src: deps.Snapshots, live: liveness{now: deps.Now, ttl: deps.TTL},
			drain: deps.Drain, m: sm},
	}
	s.handler = addRoutes(s.router, s, deps)
	// Bind every route to its operation now, so that a route the document
	// lacks fails at startup rather than on its first request. Every GET
	// route answers HEAD too (headAsGet), bound to the same operation.
	err = chi.Walk(s.router, func(method, pattern string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if method == http.MethodHead {
			return fmt.Errorf("route HEAD %s: HEAD is served by the GET route", pattern)
		}
		methods := []string{method}
		if method == http.MethodGet {
			methods = append(methods, http.MethodHead)
		}
		for _, m := range methods {
			if err := s.spec.bind(m, pattern); err != nil {
				return err
			}
			s.metrics.addRoute(m, pattern)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.answers.reads = s.spec.headersRead(http.MethodGet, answerRoutes)
	return s, nil
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// headAsGet routes HEAD as GET: a HEAD request runs the GET route's
// validation and handler, which write its status and headers and skip the
// body (writeBody; net/http drops any body of a HEAD answer). No route
// registers HEAD itself, so this is the one place HEAD is served.
func headAsGet(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			chi.RouteContext(r.Context()).RouteMethod = http.MethodGet
		}
		next.ServeHTTP(w, r)
	})
}

// routeMethod is the method whose route serves method: HEAD is GET's.
func routeMethod(method string) string {
	if method == http.MethodHead {
		return http.MethodGet
	}
	return method
}

// liveness judges heartbeats: the clock and TTL that handlers share.
type liveness struct {
	now func() time.Time
	ttl time.Duration
}

// current returns the snapshot to answer from; a source that has none yet
// reads as an empty registry that is not ready.
func current(src model.SnapshotSource) *model.Snapshot {
	if snap := src.Snapshot(); snap != nil {
		return snap
	}
	return emptySnapshot
}

var emptySnapshot = model.EmptySnapshot(nil)
