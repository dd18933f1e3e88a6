package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
)

// routeTable mirrors routeTableView for assertions.
type routeTable struct {
	Env    string `json:"env"`
	Routes []struct {
		Method  string `json:"method"`
		AppID   string `json:"app_id"`
		Targets []struct {
			Internal  string   `json:"internal"`
			Versions  []string `json:"versions"`
			Instances int      `json:"instances"`
		} `json:"targets"`
		Conflict *struct {
			Claimants []struct {
				AppID          string `json:"app_id"`
				AliveInstances int    `json:"alive_instances"`
			} `json:"claimants"`
		} `json:"conflict"`
	} `json:"routes"`
}

func (t routeTable) methods() []string {
	var out []string
	for _, r := range t.Routes {
		out = append(out, r.Method)
	}
	return out
}

func TestRoutesView(t *testing.T) {
	h := newHarness(t)
	rec := h.get("/v1/envs/qa/routes")
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	golden(t, "routes-qa", rec)
	golden(t, "routes-all", h.get("/v1/routes"))

	for _, tc := range []struct {
		target string
		want   string // methods, space-separated
	}{
		// pay-legacy wins Charge: the app filter keeps the methods an app owns.
		{"/v1/envs/qa/routes?app=pay-service", "/acme.pay.v1.PayService/Refund"},
		{"/v1/envs/qa/routes?app=pay-legacy", "/acme.pay.v1.PayService/Charge"},
		{"/v1/envs/prod/routes?service=acme.order.v1.OrderService", "/acme.order.v1.OrderService/Create /acme.order.v1.OrderService/Get"},
		{"/v1/envs/prod/routes?app=nobody", ""},
		{"/v1/envs/prod/routes?service=acme.Nothing", ""},
	} {
		rec := h.get(tc.target)
		var v routeTable
		decode(t, rec, &v)
		if got := strings.Join(v.methods(), " "); got != tc.want {
			t.Errorf("%s: methods %q, want %q", tc.target, got, tc.want)
		}
	}

	// A version filter keeps that version's instances of the owner.
	var v routeTable
	decode(t, h.get("/v1/envs/prod/routes?version=v2"), &v)
	for _, r := range v.Routes {
		for _, tg := range r.Targets {
			if !slices.Equal(tg.Versions, []string{"v2"}) {
				t.Errorf("version=v2: %s has target %s with versions %v", r.Method, tg.Internal, tg.Versions)
			}
		}
	}

	if rec := h.get("/v1/envs/nowhere/routes"); rec.Code != http.StatusNotFound || problemOf(t, rec).Code != model.CodeEnvNotFound {
		t.Errorf("unknown env: %d %s", rec.Code, rec.Body)
	}

	// Down but known: every method is still listed, with no targets.
	h.clock.Set(t0.Add(time.Hour))
	var down routeTable
	decode(t, h.get("/v1/envs/prod/routes"), &down)
	if len(down.Routes) == 0 {
		t.Fatal("no routes once every instance is stale")
	}
	for _, r := range down.Routes {
		if len(r.Targets) != 0 || r.AppID == "" {
			t.Errorf("%s with every instance stale: app %q, targets %v", r.Method, r.AppID, r.Targets)
		}
	}
}

// node is an instance for the snapshots these tests build.
type node struct {
	app, version, internal string
	lease                  int64
	runDate                time.Time
	methods                []string
}

// buildSnapshot indexes nodes as the watcher would, all in env prod of
// namespace firefly, read at syncedAt.
func buildSnapshot(syncedAt time.Time, nodes ...node) *model.Snapshot {
	var entries []model.Entry
	for _, n := range nodes {
		methods := slices.Sorted(slices.Values(n.methods))
		entries = append(entries, model.Entry{Namespace: "firefly", Key: model.CanonicalKey(n.app, n.lease), Node: &model.Node{
			Namespace: "firefly", Key: model.CanonicalKey(n.app, n.lease), Env: "prod", AppID: n.app,
			LeaseID: n.lease, Version: n.version, RunDate: n.runDate, Methods: methods,
			Network: model.Network{SN: "net", Internal: n.internal},
		}})
	}
	return &model.Snapshot{
		Envs:              map[string]*model.EnvIndex{"prod": model.BuildEnv("prod", entries)},
		EnvNames:          []string{"prod"},
		NamespaceSyncedAt: map[string]time.Time{"firefly": syncedAt},
		Namespaces:        []string{"firefly"},
	}
}

const (
	getUser  = "/acme.user.v1.UserService/Get"
	listUser = "/acme.user.v1.UserService/List"
)

// fleet is two user-service instances and one order-service instance whose
// heartbeats were at hb.
func fleet(hb time.Time) []node {
	return []node{
		{app: "user-service", version: "v1", internal: "user-service:8080", lease: 1, runDate: hb, methods: []string{getUser, listUser}},
		{app: "user-service", version: "v1", internal: "user-service:8080", lease: 2, runDate: hb.Add(-time.Second), methods: []string{getUser, listUser}},
		{app: "order-service", version: "v1", internal: "order-service:9090", lease: 3, runDate: hb, methods: []string{"/acme.order.v1.OrderService/Create"}},
	}
}

func TestRoutesTagFollowsRouting(t *testing.T) {
	h := newHarness(t)
	hb := t0.Add(-2 * time.Second)
	tagAt := func(snap *model.Snapshot) (routes, resolution string) {
		t.Helper()
		h.src.Publish(snap)
		rr := h.get("/v1/envs/prod/routes")
		res := h.get("/v1/envs/prod/methods" + getUser)
		if rr.Code != http.StatusOK || res.Code != http.StatusOK {
			t.Fatalf("routes %d, resolution %d: %s %s", rr.Code, res.Code, rr.Body, res.Body)
		}
		return rr.Header().Get("ETag"), res.Header().Get("ETag")
	}
	base, baseRes := tagAt(buildSnapshot(t0, fleet(hb)...))

	// A heartbeat moves run dates and the resolution's instance order, and
	// nothing a router cares about.
	beat := fleet(hb)
	beat[1].runDate = hb.Add(time.Second)
	tag, res := tagAt(buildSnapshot(t0.Add(time.Second), beat...))
	if tag != base || res != baseRes {
		t.Errorf("a heartbeat changed the tags: routes %s -> %s, resolution %s -> %s", base, tag, baseRes, res)
	}
	// A gateway revalidating gets 304 for both.
	for _, target := range []string{"/v1/envs/prod/routes", "/v1/envs/prod/methods" + getUser} {
		etag := base
		if strings.Contains(target, "/methods/") {
			etag = baseRes
		}
		if rec := h.do(request{target: target, header: map[string]string{"If-None-Match": etag}}); rec.Code != http.StatusNotModified {
			t.Errorf("%s revalidated after a heartbeat: %d", target, rec.Code)
		}
	}

	// Two replicas that read the same data separately answer the same tag.
	other := newHarness(t)
	other.src.Publish(buildSnapshot(t0.Add(3*time.Second), fleet(hb)...))
	if got := other.get("/v1/envs/prod/routes").Header().Get("ETag"); got != base {
		t.Errorf("another replica answers %s for the same data, this one %s", got, base)
	}

	// Each change is judged against the fleet as it was. (A death and a
	// deregistration that leave the same table answer the same tag.)
	changed := func(what string, nodes []node, at time.Time) {
		t.Helper()
		h.clock.Set(at)
		tag, res := tagAt(buildSnapshot(t0, nodes...))
		if tag == base {
			t.Errorf("%s: the routes tag did not change", what)
		}
		if what != "order-service registers" && res == baseRes {
			t.Errorf("%s: the resolution's tag did not change", what)
		}
	}
	registered := append(fleet(hb), node{app: "user-service", version: "v1", internal: "user-service:8080", lease: 4, runDate: hb, methods: []string{getUser, listUser}})
	changed("an instance registers", registered, t0)
	changed("an instance deregisters", fleet(hb)[1:], t0)
	v2 := fleet(hb)
	v2[0].version = "v2"
	changed("an instance changes version", v2, t0)
	// Lease 2 heartbeat a second before lease 1: it dies first, by time alone.
	changed("an instance dies by its TTL", fleet(hb), hb.Add(9*time.Second).Add(time.Millisecond))
	grown := append(fleet(hb), node{app: "order-service", version: "v1", internal: "order-service:9090", lease: 5, runDate: hb, methods: []string{"/acme.order.v1.OrderService/Cancel"}})
	changed("order-service registers", grown, t0)
}

// TestRoutesSmallerThanBatch checks the size claim of the routes view:
// 400 methods' routes against the batch resolution of the same methods.
func TestRoutesSmallerThanBatch(t *testing.T) {
	h := newHarness(t)
	var nodes []node
	var methods []string
	for app := range 20 {
		var ms []string
		for m := range 20 {
			ms = append(ms, "/acme.app"+strconv.Itoa(app)+".v1.Service/M"+strconv.Itoa(m))
		}
		methods = append(methods, ms...)
		for i := range 25 {
			nodes = append(nodes, node{app: "app-" + strconv.Itoa(app), version: "v" + strconv.Itoa(1+i%2),
				internal: "app-" + strconv.Itoa(app) + ".prod.svc.cluster.local:8080", lease: int64(1000*app + i + 1),
				runDate: t0.Add(-time.Duration(i%5) * time.Second), methods: ms})
		}
	}
	h.src.Publish(buildSnapshot(t0, nodes...))
	routes := h.get("/v1/envs/prod/routes")
	body, _ := marshal(resolveRequest{Methods: methods})
	batch := h.do(request{method: http.MethodPost, target: "/v1/envs/prod/resolve", body: string(body)})
	if routes.Code != http.StatusOK || batch.Code != http.StatusOK {
		t.Fatalf("routes %d, batch %d", routes.Code, batch.Code)
	}
	t.Logf("400 methods, 500 instances: routes %d bytes, batch resolution %d bytes", routes.Body.Len(), batch.Body.Len())
	if routes.Body.Len()*20 > batch.Body.Len() {
		t.Errorf("routes %d bytes, batch %d: not 20 times smaller", routes.Body.Len(), batch.Body.Len())
	}
}

// An app the env does not have owns no route: every such filter answers the
// env with no routes, from one rendering kept for the table.
func TestRoutesOfAnUnknownAppShareOneRendering(t *testing.T) {
	snap := buildSnapshot(t0, fleet(t0)...)
	env := snap.Envs["prod"]
	a, err := renderRoutes(env, routeFilter{app: "not-yet"}, t0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := renderRoutes(env, routeFilter{app: "nor-this", service: "acme.user.v1.UserService"}, t0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || string(a.Body) != "{\"env\":\"prod\",\"routes\":[]}\n" {
		t.Errorf("unknown apps: %s and %s, shared %v", a.Body, b.Body, a == b)
	}
	known, err := renderRoutes(env, routeFilter{app: "user-service"}, t0, 10*time.Second)
	if err != nil || len(known.Body) <= len(a.Body) {
		t.Errorf("a known app: %s, %v", known.Body, err)
	}
}
