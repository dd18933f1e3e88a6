package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acme/registry-api/internal/follow"
	"github.com/acme/registry-api/internal/model"
)

// The routes view renders model.RouteTable: per method, the app that owns it
// and the addresses to send it to. The unfiltered view's ETag is the table's
// model.Digest, which its followers (internal/follow) share, and a filtered
// view's is a hash of its body; neither holds anything that moves with a
// heartbeat, so every replica answers the same tag for the same table and
// the tag changes exactly when routing does.

// routeTableView is GET /v1/envs/{env}/routes.
type routeTableView struct {
	Env    string      `json:"env"`
	Routes []routeView `json:"routes"`
}

type routeView struct {
	Method   string        `json:"method"`
	AppID    string        `json:"app_id"`
	Targets  []targetView  `json:"targets"`
	Conflict *conflictView `json:"conflict,omitempty"`
}

func newRouteView(r *model.Route) routeView {
	v := routeView{Method: r.Method, AppID: r.AppID, Targets: newTargetViews(r.Targets)}
	if len(r.Claimants) > 0 {
		v.Conflict = &conflictView{Claimants: make([]claimantView, len(r.Claimants)), Rule: conflictRule}
		for i, c := range r.Claimants {
			v.Conflict.Claimants[i] = claimantView{AppID: c.AppID, AliveInstances: c.Alive}
		}
	}
	return v
}

func newTargetViews(ts []model.RouteTarget) []targetView {
	out := make([]targetView, len(ts))
	for i, t := range ts {
		out[i] = targetView{Internal: t.Internal, External: t.External, Versions: nonNil(t.Versions), Instances: t.Instances}
	}
	return out
}

// routeFilter is the routes view's query: which methods to list, and which
// version's instances to count.
type routeFilter struct {
	service, app, version string
}

func routeFilterOf(r *http.Request) routeFilter {
	raw := r.URL.RawQuery
	if raw == "" {
		return routeFilter{}
	}
	if plainQuery(raw) {
		// Read in place: no map for the usual ?app=… of a gateway.
		var f routeFilter
		f.service, _ = plainQueryValue(raw, "service")
		f.app, _ = plainQueryValue(raw, "app")
		f.version, _ = plainQueryValue(raw, "version")
		return f
	}
	q := r.URL.Query()
	return routeFilter{service: q.Get("service"), app: q.Get("app"), version: q.Get("version")}
}

func (f routeFilter) keeps(r *model.Route) bool {
	return (f.app == "" || r.AppID == f.app) && (f.service == "" || model.ServiceOf(r.Method) == f.service)
}

// renderRoutes renders env's routes at now under f. The unfiltered table, and
// an app's or a service's part of it, are rendered once per liveness state
// and kept on the snapshot.
func renderRoutes(env *model.EnvIndex, f routeFilter, now time.Time, ttl time.Duration) (*rendered, error) {
	if f.version != "" {
		return encodeRoutes(env.RouteTable(now, ttl, f.version), f)
	}
	memo := env.Routes(now, ttl)
	if f == (routeFilter{}) {
		if r := renderingsOf(memo).full.Load(); r != nil {
			return r, nil
		}
		// Followers woken together ask at once: one renders, the others
		// wait for it instead of rendering the same table beside it.
		renderMu.Lock()
		defer renderMu.Unlock()
		return renderEnvRoutesLocked(env, now, ttl)
	}
	// Only filters that name an app or service of the env are kept, so the
	// cache is bounded by the env's contents, not by what clients send. An
	// app the env does not have owns no route: whatever its name, the
	// answer is the env with no routes, kept once (a gateway asks it over
	// and over before its app registers).
	key := f.app + "\x00" + f.service
	if f.app != "" && env.Apps[f.app] == nil {
		key = noRoutesKey
		f = routeFilter{app: f.app}
	}
	if r, ok := renderingsOf(memo).filtered.Load(key); ok {
		return r.(*rendered), nil
	}
	r, err := encodeRoutes(memo.Table, f)
	if err != nil {
		return nil, err
	}
	if key == noRoutesKey || f.service == "" || bytes.Contains(r.Body, []byte(`"method":"/`+f.service+`/`)) {
		renderingsOf(memo).filtered.Store(key, r)
	}
	return r, nil
}

// noRoutesKey keeps the rendering of an app the env does not have; no
// filter's key starts with a NUL.
const noRoutesKey = "\x00none"

func encodeRoutes(t *model.RouteTable, f routeFilter) (*rendered, error) {
	size := len(t.Routes)
	if f.app != "" || f.service != "" {
		size = 0 // a part of the table: grown as it is found
	}
	v := routeTableView{Env: t.Env, Routes: make([]routeView, 0, size)}
	for i := range t.Routes {
		if f.keeps(&t.Routes[i]) {
			v.Routes = append(v.Routes, newRouteView(&t.Routes[i]))
		}
	}
	body, err := marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode routes of env %q: %w", t.Env, err)
	}
	etag := bodyETag(body)
	if f == (routeFilter{}) {
		etag = t.Digest().Tag()
	}
	return &rendered{Body: body, ETag: []string{etag}, Length: contentLength(body)}, nil
}

// renderMu lets one request at a time fill a cache of the routes views; a
// request that finds the rendering cached never takes it.
var renderMu sync.Mutex

// renderAllRoutes renders every env's unfiltered routes, {"envs": [...]},
// from the envs' own renderings, memoized on the snapshot.
func renderAllRoutes(snap *model.Snapshot, now time.Time, ttl time.Duration) (*rendered, error) {
	counts := make([]int, len(snap.EnvNames))
	for i, name := range snap.EnvNames {
		counts[i] = model.AliveCount(snap.Envs[name].Nodes, now, ttl)
	}
	if memo, _ := snap.Derived.Load().(*allRoutesMemo); memo != nil && slicesEqual(memo.aliveCounts, counts) {
		return memo.rendered, nil
	}
	renderMu.Lock()
	defer renderMu.Unlock()
	if memo, _ := snap.Derived.Load().(*allRoutesMemo); memo != nil && slicesEqual(memo.aliveCounts, counts) {
		return memo.rendered, nil
	}
	var buf bytes.Buffer
	buf.WriteString(`{"envs":[`)
	for i, name := range snap.EnvNames {
		r, err := renderEnvRoutesLocked(snap.Envs[name], now, ttl)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(bytes.TrimSuffix(r.Body, []byte("\n")))
	}
	buf.WriteString("]}\n")
	body := buf.Bytes()
	out := &rendered{Body: body, ETag: []string{snap.RoutesDigest(now, ttl).Tag()}, Length: contentLength(body)}
	snap.Derived.Store(&allRoutesMemo{aliveCounts: counts, rendered: out})
	return out, nil
}

// renderEnvRoutesLocked is renderRoutes of the unfiltered view with
// renderMu held.
func renderEnvRoutesLocked(env *model.EnvIndex, now time.Time, ttl time.Duration) (*rendered, error) {
	memo := env.Routes(now, ttl)
	kept := renderingsOf(memo)
	if r := kept.full.Load(); r != nil {
		return r, nil
	}
	r, err := encodeRoutes(memo.Table, routeFilter{})
	if err != nil {
		return nil, err
	}
	kept.full.Store(r)
	return r, nil
}

// rendered is an answer's body with its ETag and Content-Length, kept so that
// a cached rendering costs no formatting per request.
type rendered struct {
	Body   []byte
	ETag   []string
	Length []string

	compressOnce sync.Once
	compressed   *rendered
}

// Compressed returns compress's rendering of r, made by the first caller
// and shared with every later one.
func (r *rendered) Compressed(compress func(*rendered) *rendered) *rendered {
	r.compressOnce.Do(func() { r.compressed = compress(r) })
	return r.compressed
}

// tableRenderings are the answers made from one route table, kept on it
// (model.RoutesMemo.Derived) and dropped with it.
type tableRenderings struct {
	// full is the whole table's.
	full atomic.Pointer[rendered]
	// filtered holds parts of it (one app's or one service's routes), by
	// filter.
	filtered sync.Map
	// exports holds it as Kubernetes objects, by kind and media type.
	exports sync.Map
}

// renderingsOf returns the renderings kept on memo.
func renderingsOf(memo *model.RoutesMemo) *tableRenderings {
	if kept, ok := memo.Derived.Load().(*tableRenderings); ok {
		return kept
	}
	return memo.Derived.LoadOrStore(&tableRenderings{}).(*tableRenderings)
}

// allRoutesMemo is every env's routes rendered for one liveness state (the
// envs' alive counts, in EnvNames order), kept on the snapshot.
type allRoutesMemo struct {
	aliveCounts []int
	rendered    *rendered
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// routeETag is a resolution's tag: weak, since it follows the method's route
// (app, targets, versions, live counts, claimants) rather than every byte of
// the body, whose instances carry their heartbeats.
func routeETag(r *model.Route) ([]string, error) {
	body, err := marshal(newRouteView(r))
	if err != nil {
		return nil, fmt.Errorf("encode route of %s: %w", r.Method, err)
	}
	return []string{"W/" + bodyETag(body)}, nil
}

// handleEnvRoutes serves GET /v1/envs/{env}/routes, a blocking query when
// asked to wait (see follow.go).
func handleEnvRoutes(live liveness, fl *following) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := pathParam(r, "env")
		f := routeFilterOf(r)
		fl.serveBlocking(w, r, name, true, func(snap *model.Snapshot, now time.Time) (*rendered, error) {
			env, err := lookupEnv(w, snap, name)
			if err != nil {
				return nil, err
			}
			return renderRoutes(env, f, now, live.ttl)
		})
	}
}

// handleAllRoutes serves GET /v1/routes: every env's routes at once.
func handleAllRoutes(live liveness, fl *following) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fl.serveBlocking(w, r, follow.AllEnvs, true, func(snap *model.Snapshot, now time.Time) (*rendered, error) {
			setSyncedAt(w, snap.SyncedAt())
			return renderAllRoutes(snap, now, live.ttl)
		})
	}
}

// serveBlockingResolve answers GET /v1/envs/{env}/methods/{method} as a
// blocking query: it waits on the env's routes, which hold the method's.
func serveBlockingResolve(w http.ResponseWriter, r *http.Request, live liveness, fl *following) {
	name := pathParam(r, "env")
	method, err := methodParam(r)
	if err != nil {
		writeProblem(w, r, err)
		return
	}
	version := r.URL.Query().Get("version")
	fl.serveBlocking(w, r, name, false, func(snap *model.Snapshot, now time.Time) (*rendered, error) {
		env, err := lookupEnv(w, snap, name)
		if err != nil {
			return nil, err
		}
		body, etag, length, err := resolve(env, method, version, liveness{now: func() time.Time { return now }, ttl: live.ttl})
		if err != nil {
			return nil, err
		}
		return &rendered{Body: body, ETag: etag, Length: length}, nil
	})
}
