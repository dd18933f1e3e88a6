package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/acme/registry-api/internal/http/swaggerui"
)

// addRoutes wires every route of the API and returns the server's handler.
// Every request is observed (logged and counted) and admitted, answered
// from a kept answer when one holds (answers.go), and otherwise routed.
// Routes in the validated groups are checked against openapi.yaml before
// their handler runs.
func addRoutes(r *chi.Mux, s *server, deps Deps) http.Handler {
	live := liveness{now: deps.Now, ttl: deps.TTL}
	snaps := deps.Snapshots

	r.Use(routed)
	r.Use(headAsGet)
	r.NotFound(notFound)
	r.MethodNotAllowed(methodNotAllowed(r))

	// Probes, metrics and the API document: open to all, always.
	r.Group(func(r chi.Router) {
		r.Use(s.validate)

		r.Get("/healthz", handleHealthz())
		r.Get("/readyz", handleReadyz(snaps))
		r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(deps.Prometheus, promhttp.HandlerOpts{}))
		r.Get("/openapi.yaml", handleSpecYAML(s.spec))
		r.Get("/openapi.json", handleSpecJSON(s.spec))
	})

	// The read API; with ReadAuth, for authenticated callers only.
	r.Group(func(r chi.Router) {
		if deps.ReadAuth {
			r.Use(authenticate(deps.Auth))
		}
		r.Use(s.validate)

		r.Get("/v1/envs", handleListEnvs(snaps, live))
		r.Get("/v1/envs/{env}", handleGetEnv(snaps, live, deps.RouteSync))
		r.Get("/v1/envs/{env}/apps", handleListApps(snaps, live))
		r.Get("/v1/envs/{env}/apps/{appId}", handleGetApp(snaps, live))
		r.Get("/v1/envs/{env}/methods", handleListMethods(snaps, live))
		// A gRPC method holds slashes, so it takes the rest of the path.
		r.Get("/v1/envs/{env}/methods/*", handleResolveMethod(snaps, live, s.follow))
		r.Post("/v1/envs/{env}/resolve", handleResolveMethods(snaps, live))
		r.Get("/v1/envs/{env}/apps/{appId}/instances/{leaseId}", handleGetInstance(snaps, live))
		r.Get("/v1/envs/{env}/apps/{appId}/versions/{version}", handleGetVersion(snaps))
		r.Get("/v1/envs/{env}/routes", handleEnvRoutes(live, s.follow))
		r.Get("/v1/routes", handleAllRoutes(live, s.follow))
		r.Get("/v1/envs/{env}/routes/events", handleRouteEvents(s.follow, false))
		r.Get("/v1/routes/events", handleRouteEvents(s.follow, true))
		r.Get("/v1/envs/{env}/export/grpcroutes", handleExportGRPCRoutes(snaps, live, deps.Gateway))
		r.Get("/v1/envs/{env}/export/istio", handleExportIstio(snaps, live, deps.IstioVersionHeader))
	})

	// The write API. A server without a write path refuses it before
	// anything else: no request to it could succeed. Then callers are
	// authenticated, then requests validated; the policy judges each write
	// on the entry it would change (writeDeps.guard).
	wd := writeDeps{writer: deps.Writer, snaps: snaps, live: live, namespace: deps.WriteNamespace,
		authenticated: deps.Auth != nil, policy: deps.Policy}
	if deps.ReadOnly {
		wd.writer = nil
	}
	r.Group(func(w chi.Router) {
		if wd.writer == nil {
			w.Use(refuseWrites(r))
		}
		if deps.Auth != nil {
			w.Use(authenticate(deps.Auth))
		}
		w.Use(s.validate)

		w.Post("/v1/envs/{env}/apps/{appId}/instances", handleRegister(wd))
		w.Put("/v1/envs/{env}/apps/{appId}/instances/{leaseId}/heartbeat", handleHeartbeat(wd))
		w.Delete("/v1/envs/{env}/apps/{appId}/instances/{leaseId}", handleDeregister(wd))
		w.Put("/v1/envs/{env}/apps/{appId}/versions/{version}", handlePutVersion(wd))
		w.Delete("/v1/envs/{env}/apps/{appId}/versions/{version}", handleDeleteVersion(wd))
	})

	// Static assets: nothing to validate.
	r.Get("/docs", handleDocsRedirect())
	r.Method(http.MethodGet, "/docs/*", http.StripPrefix("/docs", swaggerui.Handler(http.HandlerFunc(docsNotFound))))

	h := http.Handler(r)
	if !deps.ReadAuth {
		// Behind read authentication every request must show its token.
		h = s.answers.serve(h)
	}
	return s.observe(s.admit(h))
}
