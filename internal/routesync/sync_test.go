package routesync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/follow"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/testkit"
)

// The unit tests sync a toy kind, Route, one per app, whose spec lists the
// app's methods: what the sync decides does not depend on the objects'
// shape. The real kinds are applied to a real API server by the
// integration tests.
var routeKind = Kind{
	Name: "Route",
	GVR:  schema.GroupVersionResource{Group: "example.io", Version: "v1", Resource: "routes"},
	Routes: func(o *unstructured.Unstructured) []string {
		m, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "methods")
		return m
	},
}

func buildRoutes(env string, table *model.RouteTable, namespaces map[string]string) ([]*unstructured.Unstructured, error) {
	byApp := map[string][]string{}
	for _, r := range table.Routes {
		if len(r.Targets) > 0 {
			byApp[r.AppID] = append(byApp[r.AppID], r.Method)
		}
	}
	var out []*unstructured.Unstructured
	for app, methods := range byApp {
		o := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "example.io/v1", "kind": "Route",
			"spec": map[string]any{"methods": toAny(methods)},
		}}
		o.SetName(env + "." + app)
		o.SetNamespace(namespaces[app])
		o.SetLabels(map[string]string{export.LabelManagedBy: export.ManagedBy})
		out = append(out, o)
	}
	return out, nil
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// registry builds snapshots of namespace "shop", synced at a given instant.
type registry struct {
	nodes []*model.Node
}

func (r *registry) add(app, method string, runDate time.Time) *registry {
	r.nodes = append(r.nodes, &model.Node{Namespace: "shop", Key: fmt.Sprintf("%s.%d", app, len(r.nodes)), Env: "prod", AppID: app,
		LeaseID: int64(len(r.nodes) + 1), Version: "v1", RunDate: runDate, Methods: []string{method},
		Network: model.Network{Internal: app + ":8080"}})
	return r
}

func (r *registry) snapshot(synced time.Time) *model.Snapshot {
	entries := make([]model.Entry, len(r.nodes))
	for i, n := range r.nodes {
		entries[i] = model.Entry{Namespace: n.Namespace, Key: n.Key, Node: n}
	}
	env := model.BuildEnv("prod", entries)
	return &model.Snapshot{Envs: map[string]*model.EnvIndex{"prod": env}, EnvNames: []string{"prod"},
		NamespaceSyncedAt: map[string]time.Time{"shop": synced}, Namespaces: []string{"shop"}}
}

type harness struct {
	t      *testing.T
	clock  *testkit.Clock
	source *testkit.Source
	builds int
	client *dynamicfake.FakeDynamicClient
	disco  *fakediscovery.FakeDiscovery
	reg    *prometheus.Registry
	syncer *Syncer
}

const (
	ttl   = 10 * time.Second
	grace = time.Minute
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, served bool, objects ...runtime.Object) *harness {
	t.Helper()
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{routeKind.GVR: "RouteList"}, objects...)
	// The fake's own apply is a strategic merge onto an existing object;
	// the sync's objects are wholly its own, so apply is create or replace.
	client.PrependReactor("patch", "routes", func(a clienttesting.Action) (bool, runtime.Object, error) {
		p := a.(clienttesting.PatchAction)
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(p.GetPatch()); err != nil {
			return true, nil, err
		}
		tracker := client.Tracker()
		if _, err := tracker.Get(routeKind.GVR, p.GetNamespace(), p.GetName()); apierrors.IsNotFound(err) {
			return true, obj, tracker.Create(routeKind.GVR, obj, p.GetNamespace())
		}
		return true, obj, tracker.Update(routeKind.GVR, obj, p.GetNamespace())
	})
	disco := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	if served {
		disco.Resources = []*metav1.APIResourceList{{GroupVersion: "example.io/v1",
			APIResources: []metav1.APIResource{{Name: "routes", Kind: "Route", Namespaced: true}}}}
	}
	h := &harness{t: t, clock: testkit.NewClock(t0), source: testkit.NewSource(model.EmptySnapshot([]string{"shop"})),
		client: client, disco: disco, reg: prometheus.NewRegistry()}
	hub, err := follow.New(follow.Options{Source: h.source, Now: h.clock.Now, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	build := func(env string, table *model.RouteTable, namespaces map[string]string) ([]*unstructured.Unstructured, error) {
		h.builds++
		return buildRoutes(env, table, namespaces)
	}
	s, err := New(Options{Follow: hub, Client: client, Discovery: disco, Kinds: []Kind{routeKind}, Build: build,
		TTL: ttl, Grace: grace, MaxStaleness: 5 * time.Second, Namespaces: []string{"shop"},
		Now: h.clock.Now, Log: zerolog.Nop(), Registerer: h.reg})
	if err != nil {
		t.Fatal(err)
	}
	h.syncer = s
	s.startTerm(h.clock.Now())
	t.Cleanup(s.endTerm)
	return h
}

// at reconciles at instant now over reg, synced then.
func (h *harness) at(now time.Time, reg *registry) {
	h.t.Helper()
	h.clock.Set(now)
	h.source.Swap(reg.snapshot(now))
	h.syncer.Reconcile(context.Background())
}

// routes lists the cluster's Route objects as "namespace/name: methods".
func (h *harness) routes() []string {
	h.t.Helper()
	list, err := h.client.Resource(routeKind.GVR).Namespace("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, o := range list.Items {
		m, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "methods")
		slices.Sort(m)
		out = append(out, o.GetNamespace()+"/"+o.GetName()+": "+strings.Join(m, ","))
	}
	slices.Sort(out)
	return out
}

func (h *harness) want(when string, want ...string) {
	h.t.Helper()
	if got := h.routes(); !slices.Equal(got, want) {
		h.t.Errorf("%s: routes %q, want %q", when, got, want)
	}
}

// writes counts the sync's calls that change the cluster.
func (h *harness) writes() int {
	n := 0
	for _, a := range h.client.Actions() {
		if a.GetVerb() == "patch" || a.GetVerb() == "delete" || a.GetVerb() == "create" {
			n++
		}
	}
	return n
}

func managed(ns, name string, methods ...string) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "example.io/v1", "kind": "Route",
		"spec": map[string]any{"methods": toAny(methods)}}}
	o.SetNamespace(ns)
	o.SetName(name)
	o.SetLabels(map[string]string{export.LabelManagedBy: export.ManagedBy})
	return o
}

func TestSyncAppliesRoutesOfLiveMethods(t *testing.T) {
	h := newHarness(t, true)
	reg := (&registry{}).add("user-service", "/user.v1.Users/Get", t0).add("order-service", "/order.v1.Orders/Get", t0)
	h.at(t0, reg)
	h.want("first sync", "shop/prod.order-service: /order.v1.Orders/Get", "shop/prod.user-service: /user.v1.Users/Get")
	if got := testutil.ToFloat64(h.syncer.m.applied.WithLabelValues("Route")); got != 2 {
		t.Errorf("applied = %v, want 2", got)
	}

	// Nothing changed for routing (a heartbeat): nothing is written.
	before := h.writes()
	reg.nodes[0].RunDate = t0.Add(5 * time.Second)
	h.at(t0.Add(5*time.Second), reg)
	if h.writes() != before {
		t.Errorf("a heartbeat wrote %d times", h.writes()-before)
	}
}

func TestSyncKeepsADeadMethodForTheGracePeriod(t *testing.T) {
	h := newHarness(t, true)
	reg := (&registry{}).add("user-service", "/user.v1.Users/Get", t0).add("user-service", "/user.v1.Users/List", t0)
	h.at(t0, reg)
	h.want("live", "shop/prod.user-service: /user.v1.Users/Get,/user.v1.Users/List")

	// List's instance stops heartbeating; Get's goes on.
	beat := func(at time.Time) { reg.nodes[0].RunDate = at }
	lastLive := t0.Add(ttl)
	for at := t0.Add(5 * time.Second); at.Before(lastLive.Add(grace)); at = at.Add(5 * time.Second) {
		beat(at)
		h.at(at, reg)
	}
	h.want("dead for less than the grace period", "shop/prod.user-service: /user.v1.Users/Get,/user.v1.Users/List")
	at := lastLive.Add(grace + 5*time.Second)
	beat(at)
	h.at(at, reg)
	h.want("dead for longer", "shop/prod.user-service: /user.v1.Users/Get")

	// The whole app goes (deregistered): its object stays for the grace
	// period, then is deleted.
	gone := &registry{}
	h.at(at.Add(time.Second), gone)
	h.want("just deregistered", "shop/prod.user-service: /user.v1.Users/Get")
	h.at(at.Add(grace+2*time.Second), gone)
	h.want("deregistered for longer than the grace period")
	if got := testutil.ToFloat64(h.syncer.m.deleted.WithLabelValues("Route")); got != 1 {
		t.Errorf("deleted = %v, want 1", got)
	}
}

// A new term knows nothing of the last grace period: the objects of the
// previous leader keep every route until it has passed.
func TestSyncRemovesNothingInANewTermsGracePeriod(t *testing.T) {
	h := newHarness(t, true,
		managed("shop", "prod.user-service", "/user.v1.Users/Get", "/user.v1.Users/Gone"),
		managed("shop", "prod.billing", "/billing.v1.Bills/Get"))
	reg := (&registry{}).add("user-service", "/user.v1.Users/Get", t0).add("order-service", "/order.v1.Orders/Get", t0)
	h.at(t0, reg)
	h.want("new term", "shop/prod.billing: /billing.v1.Bills/Get", "shop/prod.order-service: /order.v1.Orders/Get",
		"shop/prod.user-service: /user.v1.Users/Get,/user.v1.Users/Gone")
	if got := testutil.ToFloat64(h.syncer.m.deferred.WithLabelValues("Route")); got != 1 {
		t.Errorf("deferred = %v, want 1", got)
	}
	for at := t0.Add(5 * time.Second); at.Before(t0.Add(grace)); at = at.Add(5 * time.Second) {
		for _, n := range reg.nodes {
			n.RunDate = at
		}
		h.at(at, reg)
	}
	h.want("within the grace period", "shop/prod.billing: /billing.v1.Bills/Get", "shop/prod.order-service: /order.v1.Orders/Get",
		"shop/prod.user-service: /user.v1.Users/Get,/user.v1.Users/Gone")
	at := t0.Add(grace)
	for _, n := range reg.nodes {
		n.RunDate = at
	}
	h.at(at, reg)
	h.want("after it", "shop/prod.order-service: /order.v1.Orders/Get", "shop/prod.user-service: /user.v1.Users/Get")
}

// While the registry's data is not fresh (the API server is away), nothing
// changes; when it is back, instances get a grace period to heartbeat again.
func TestSyncChangesNothingOnStaleData(t *testing.T) {
	h := newHarness(t, true)
	reg := (&registry{}).add("user-service", "/user.v1.Users/Get", t0.Add(grace))
	h.at(t0.Add(grace), reg) // past the term's quiet start
	h.want("live", "shop/prod.user-service: /user.v1.Users/Get")

	before := h.writes()
	h.clock.Set(t0.Add(grace + 10*time.Minute))
	h.source.Swap(reg.snapshot(t0.Add(grace))) // last synced ten minutes ago
	h.syncer.Reconcile(context.Background())
	if h.writes() != before {
		t.Error("a stale snapshot changed the cluster")
	}
	if got := testutil.ToFloat64(h.syncer.m.paused); got != 1 {
		t.Errorf("paused = %v, want 1", got)
	}

	// Fresh again: the instance, which could not heartbeat, is dead by
	// run_date, yet keeps its route until it had a grace period to return.
	back := t0.Add(grace + 10*time.Minute + time.Second)
	h.at(back, reg)
	h.want("fresh again", "shop/prod.user-service: /user.v1.Users/Get")
	h.at(back.Add(grace-time.Second), reg)
	h.want("fresh for less than the grace period", "shop/prod.user-service: /user.v1.Users/Get")
	h.at(back.Add(grace), reg)
	h.want("dead for the grace period since the data came back")
}

func TestSyncLeavesSomeoneElsesObjectAlone(t *testing.T) {
	theirs := managed("shop", "prod.user-service", "/hand.v1.Written/Rule")
	theirs.SetLabels(map[string]string{"team": "edge"})
	h := newHarness(t, true, theirs)
	reg := (&registry{}).add("user-service", "/user.v1.Users/Get", t0.Add(grace))
	h.at(t0.Add(grace), reg)
	h.want("name taken", "shop/prod.user-service: /hand.v1.Written/Rule")
	if got := testutil.ToFloat64(h.syncer.m.foreign.WithLabelValues("Route")); got != 1 {
		t.Errorf("foreign = %v, want 1", got)
	}
	h.at(t0.Add(2*grace), &registry{})
	h.want("not ours to delete", "shop/prod.user-service: /hand.v1.Written/Rule")
}

func TestSyncLeavesAKindTheServerDoesNotServe(t *testing.T) {
	h := newHarness(t, false)
	reg := (&registry{}).add("user-service", "/user.v1.Users/Get", t0)
	h.at(t0, reg)
	if h.writes() != 0 {
		t.Errorf("wrote %d objects of a kind not served", h.writes())
	}
	if got := h.syncer.Status(); !slices.Equal(got, []KindStatus{{Kind: "Route", Served: false}}) {
		t.Errorf("status %v", got)
	}
	if got := testutil.ToFloat64(h.syncer.m.served.WithLabelValues("Route")); got != 0 {
		t.Errorf("served = %v, want 0", got)
	}
}

// A discovery that fails before any answer says nothing of the kinds: the
// sync neither writes nor declares them unserved, and tries again.
func TestSyncWaitsForAFirstDiscovery(t *testing.T) {
	h := newHarness(t, true)
	failing := true
	h.disco.PrependReactor("get", "resource", func(clienttesting.Action) (bool, runtime.Object, error) {
		if failing {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	reg := (&registry{}).add("user-service", "/user.v1.Users/Get", t0)
	h.at(t0, reg)
	if h.writes() != 0 || h.syncer.Status() != nil {
		t.Fatalf("after a failed first discovery: %d writes, status %v", h.writes(), h.syncer.Status())
	}
	failing = false
	h.at(t0.Add(time.Second), reg)
	h.want("once discovery answers", "shop/prod.user-service: /user.v1.Users/Get")
}

// Every replica runs Discover while the leader runs Reconcile: the two share
// what discovery found.
func TestDiscoverRunsBesideReconcile(t *testing.T) {
	h := newHarness(t, true)
	h.syncer.o.Resync = time.Millisecond // discover often, on both sides
	reg := (&registry{}).add("user-service", "/user.v1.Users/Get", t0)
	h.source.Swap(reg.snapshot(t0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.syncer.Discover(ctx)
	}()
	for range 200 {
		h.syncer.Reconcile(ctx)
	}
	cancel()
	<-done
	h.want("beside discovery", "shop/prod.user-service: /user.v1.Users/Get")
}

// A wake-up whose route table has the tag of the last reconcile builds
// nothing: heartbeats come and go without a rebuild or a hash of any object.
func TestSyncDoesNotRebuildAnUnchangedTable(t *testing.T) {
	h := newHarness(t, true)
	start := t0.Add(grace) // past the term's quiet start
	h.at(start, (&registry{}).add("user-service", "/user.v1.Users/Get", start))
	if h.builds == 0 {
		t.Fatal("the first reconcile built nothing")
	}
	built := h.builds
	for i := range 5 {
		// A heartbeat: a new snapshot, the same routes.
		at := start.Add(time.Duration(i+1) * 5 * time.Second)
		h.at(at, (&registry{}).add("user-service", "/user.v1.Users/Get", at))
	}
	if h.builds != built {
		t.Errorf("heartbeats rebuilt the objects %d times", h.builds-built)
	}
	// With nothing to do, the leader still looks again within MaxStaleness:
	// an outage must pause it even when no instance dies meanwhile.
	if next := h.syncer.Reconcile(context.Background()); next.After(h.clock.Now().Add(h.syncer.o.MaxStaleness)) {
		t.Errorf("next look at %s, later than MaxStaleness (%s) from now", next.Sub(h.clock.Now()), h.syncer.o.MaxStaleness)
	}
	at := start.Add(30 * time.Second)
	h.at(at, (&registry{}).add("user-service", "/user.v1.Users/Get", at).add("order-service", "/order.v1.Orders/Get", at))
	if h.builds == built {
		t.Error("a new method did not rebuild the objects")
	}
	h.want("after a registration", "shop/prod.order-service: /order.v1.Orders/Get", "shop/prod.user-service: /user.v1.Users/Get")
}

// A method that goes after a long unchanged stretch keeps its rules for the
// grace period from when it went, not from the last rebuild.
func TestSyncGraceCountsFromTheChangeAfterAQuietStretch(t *testing.T) {
	h := newHarness(t, true)
	start := t0.Add(grace)
	both := func(at time.Time) *registry {
		return (&registry{}).add("user-service", "/user.v1.Users/Get", at).add("order-service", "/order.v1.Orders/Get", at)
	}
	h.at(start, both(start))
	quiet := start.Add(10 * time.Minute)
	h.at(quiet, both(quiet)) // ten minutes of heartbeats, no rebuild
	gone := quiet.Add(time.Second)
	h.at(gone, (&registry{}).add("user-service", "/user.v1.Users/Get", gone))
	h.want("just after the method went", "shop/prod.order-service: /order.v1.Orders/Get", "shop/prod.user-service: /user.v1.Users/Get")
	h.at(gone.Add(grace-time.Second), (&registry{}).add("user-service", "/user.v1.Users/Get", gone.Add(grace-time.Second)))
	h.want("within its grace", "shop/prod.order-service: /order.v1.Orders/Get", "shop/prod.user-service: /user.v1.Users/Get")
	h.at(gone.Add(grace), (&registry{}).add("user-service", "/user.v1.Users/Get", gone.Add(grace)))
	h.want("after its grace", "shop/prod.user-service: /user.v1.Users/Get")
}
