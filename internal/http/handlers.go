package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/routesync"
)

// maxBatch caps a batch resolution; openapi.yaml says the same.
const maxBatch = 1000

// handleHealthz serves GET /healthz: the process is up.
func handleHealthz() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		encode(w, r, http.StatusOK, statusView{Status: "ok"})
	}
}

// notReady says what a snapshot that is not ready still waits for.
func notReady(snap *model.Snapshot) error {
	if !snap.SyncedAt().IsZero() && snap.AwaitingEndpoints {
		return model.Errorf(model.CodeNotReady, "the endpoints that keep version registrations alive have not been read yet")
	}
	return model.Errorf(model.CodeNotReady, "the registry has not been read from every watched namespace yet")
}

// handleReadyz serves GET /readyz: ready once every watched namespace has
// been read, and from then on even while the API server fails, since the
// last data read stays servable.
func handleReadyz(src model.SnapshotSource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		snap := current(src)
		if !snap.Ready() {
			writeProblem(w, r, notReady(snap))
			return
		}
		synced := snap.SyncedAt()
		setSyncedAt(w, synced)
		encode(w, r, http.StatusOK, statusView{Status: "ok", SyncedAt: formatTime(synced)})
	}
}

// handleSpecYAML serves GET /openapi.yaml.
func handleSpecYAML(spec *apiSpec) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeBody(w, r, http.StatusOK, ctYAML, spec.yaml, spec.yamlETag, nil)
	}
}

// handleSpecJSON serves GET /openapi.json.
func handleSpecJSON(spec *apiSpec) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		writeBody(w, r, http.StatusOK, ctJSON, spec.json, spec.jsonETag, nil)
	}
}

var zeroLength = []string{"0"}

// handleDocsRedirect serves GET /docs. The target is relative so that it
// survives a proxy that serves the API under a path prefix.
func handleDocsRedirect() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "docs/")
		// Set, not left to net/http, so that HEAD carries it too.
		w.Header()[hdrContentLen] = zeroLength
		w.WriteHeader(http.StatusMovedPermanently)
	}
}

// handleListEnvs serves GET /v1/envs.
func handleListEnvs(src model.SnapshotSource, live liveness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		snap := current(src)
		names := snap.EnvNames
		if !slices.IsSorted(names) {
			names = slices.Sorted(slices.Values(names))
		}
		v := envListView{Envs: make([]envSummaryView, 0, len(names))}
		for _, name := range names {
			if env := snap.Envs[name]; env != nil {
				v.Envs = append(v.Envs, newEnvSummaryView(snap, env, live))
			}
		}
		setSyncedAt(w, snap.SyncedAt())
		encode(w, r, http.StatusOK, v)
	}
}

// handleGetEnv serves GET /v1/envs/{env}.
func handleGetEnv(src model.SnapshotSource, live liveness, routeSync func() []routesync.KindStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		snap, env, err := pathEnv(w, r, src)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		encode(w, r, http.StatusOK, newEnvDetailView(snap, env, live, routeSync))
	}
}

// handleListApps serves GET /v1/envs/{env}/apps.
func handleListApps(src model.SnapshotSource, live liveness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, env, err := pathEnv(w, r, src)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		now := live.now()
		v := appListView{Env: env.Name, Apps: make([]appSummaryView, 0, len(env.AppIDs))}
		for _, id := range env.AppIDs {
			app := env.Apps[id]
			v.Apps = append(v.Apps, appSummaryView{
				AppID:     app.ID,
				Versions:  nonNil(app.Versions),
				Instances: newCountsView(app.Counts(now, live.ttl)),
				Methods:   len(app.Methods),
			})
		}
		encode(w, r, http.StatusOK, v)
	}
}

// handleGetApp serves GET /v1/envs/{env}/apps/{appId}.
func handleGetApp(src model.SnapshotSource, live liveness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		env, app, err := pathApp(w, r, src)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		now := live.now()
		nodes := app.Nodes
		if r.URL.Query().Get("include") != "stale" {
			nodes = nodes[:model.AliveCount(nodes, now, live.ttl)]
		}
		v := appDetailView{
			Env:       env.Name,
			AppID:     app.ID,
			Versions:  nonNil(app.Versions),
			Methods:   nonNil(app.Methods),
			Instances: make([]instanceView, len(nodes)),
		}
		for i, n := range nodes {
			v.Instances[i] = newInstanceView(n, now, live.ttl)
		}
		encode(w, r, http.StatusOK, v)
	}
}

// handleListMethods serves GET /v1/envs/{env}/methods.
func handleListMethods(src model.SnapshotSource, live liveness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, env, err := pathEnv(w, r, src)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		service := r.URL.Query().Get("service")
		now := live.now()
		v := methodListView{Env: env.Name, Methods: []methodSummaryView{}}
		for _, name := range env.MethodNames {
			if service != "" && model.ServiceOf(name) != service {
				continue
			}
			m := env.Methods[name]
			claim := m.Claims[m.Winner(now, live.ttl)]
			v.Methods = append(v.Methods, methodSummaryView{
				Method:         name,
				AppID:          claim.AppID,
				AliveInstances: model.AliveCount(claim.Nodes, now, live.ttl),
				Conflict:       len(m.Claims) > 1,
			})
		}
		encode(w, r, http.StatusOK, v)
	}
}

// handleResolveMethod serves GET /v1/envs/{env}/methods/{method}, the hot
// path: gateways ask it where to send a gRPC call.
func handleResolveMethod(src model.SnapshotSource, live liveness, fl *following) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(r.Header[hdrPrefer]) > 0 && len(r.Header[hdrIfNoneMatch]) > 0 {
			serveBlockingResolve(w, r, live, fl)
			return
		}
		_, env, err := pathEnv(w, r, src)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		method, err := methodParam(r)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		var version string
		if r.URL.RawQuery != "" {
			version = r.URL.Query().Get("version")
		}
		body, etag, length, err := resolve(env, method, version, live)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeBody(w, r, http.StatusOK, ctJSON, body, etag, length)
	}
}

// handleResolveMethods serves POST /v1/envs/{env}/resolve: many methods in
// one round trip, each answered as handleResolveMethod would.
func handleResolveMethods(src model.SnapshotSource, live liveness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req resolveRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeProblem(w, r, &model.Error{Code: model.CodeInvalid, Message: "request body is not a valid resolve request", Err: err})
			return
		}
		if len(req.Methods) > maxBatch {
			writeProblem(w, r, model.Errorf(model.CodeTooManyMethods, "at most %d methods per request", maxBatch))
			return
		}
		_, env, err := pathEnv(w, r, src)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		v := resolveResponseView{Results: make([]resolveResultView, len(req.Methods))}
		for i, method := range req.Methods {
			v.Results[i].Method = method
			body, _, _, err := resolve(env, method, req.Version, live)
			if err != nil {
				p := newProblem(err)
				v.Results[i].Error = &p
				continue
			}
			v.Results[i].Resolution = body
		}
		encode(w, r, http.StatusOK, v)
	}
}

// handleGetInstance serves GET /v1/envs/{env}/apps/{appId}/instances/{leaseId},
// the instance a registration's Location names, alive or stale.
func handleGetInstance(src model.SnapshotSource, live liveness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		lease, err := leaseParam(r)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		env, app, err := pathApp(w, r, src)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		for _, n := range app.Nodes {
			if n.LeaseID == lease {
				encode(w, r, http.StatusOK, newInstanceView(n, live.now(), live.ttl))
				return
			}
		}
		writeProblem(w, r, model.Errorf(model.CodeLeaseNotFound, "no instance with lease %d of app %s in env %s", lease, app.ID, env.Name))
	}
}

// pathEnv is the env the request's path names, in the current snapshot,
// with X-Registry-Synced-At set; or the problem to answer.
func pathEnv(w http.ResponseWriter, r *http.Request, src model.SnapshotSource) (*model.Snapshot, *model.EnvIndex, error) {
	snap := current(src)
	env, err := lookupEnv(w, snap, pathParam(r, "env"))
	return snap, env, err
}

// pathApp is the app the request's path names in its env; or the problem
// to answer.
func pathApp(w http.ResponseWriter, r *http.Request, src model.SnapshotSource) (*model.EnvIndex, *model.App, error) {
	_, env, err := pathEnv(w, r, src)
	if err != nil {
		return nil, nil, err
	}
	id := pathParam(r, "appId")
	app := env.Apps[id]
	if app == nil {
		return env, nil, model.Errorf(model.CodeAppNotFound, "no app %q in env %q", id, env.Name)
	}
	return env, app, nil
}

// lookupEnv finds the named env and sets X-Registry-Synced-At to the age of
// the data the answer comes from, the env's or, for an unknown env, all.
func lookupEnv(w http.ResponseWriter, snap *model.Snapshot, name string) (*model.EnvIndex, error) {
	env := snap.Envs[name]
	if env == nil {
		setSyncedAt(w, snap.SyncedAt())
		return nil, model.Errorf(model.CodeEnvNotFound, "no env %q in the registry", name)
	}
	setSyncedAt(w, snap.EnvSyncedAt(env))
	return env, nil
}

// syncedAtHeader is a formatted X-Registry-Synced-At. The last one is kept:
// snapshots change far less often than requests arrive.
type syncedAtHeader struct {
	at    time.Time
	value []string
}

var lastSyncedAt atomic.Pointer[syncedAtHeader]

// setSyncedAt sets X-Registry-Synced-At, or nothing before the first read.
func setSyncedAt(w http.ResponseWriter, t time.Time) {
	if t.IsZero() {
		return
	}
	h := lastSyncedAt.Load()
	if h == nil || !h.at.Equal(t) {
		h = &syncedAtHeader{at: t, value: []string{formatTime(t)}}
		lastSyncedAt.Store(h)
	}
	w.Header()[hdrSyncedAt] = h.value
}

// heartbeatRetryAfter is when a method with no live instance may have one
// again: instances heartbeat every TTL/2.
func heartbeatRetryAfter(ttl time.Duration) []string {
	secs := int64((ttl/2 + time.Second - 1) / time.Second)
	return []string{strconv.FormatInt(max(secs, 1), 10)}
}
