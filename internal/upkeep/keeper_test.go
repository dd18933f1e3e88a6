package upkeep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/write"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// settableClock is the injected clock of a test.
type settableClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *settableClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// entryJSON is an entry as the library writes it, with registry-api's
// members when rb is set.
func entryJSON(t *testing.T, env, app string, lease int64, runDate time.Time, rb *model.RegisteredBy, keepalive string) string {
	t.Helper()
	b, err := json.Marshal(model.ServiceNode{
		ProtoCount: 1,
		LeaseID:    lease,
		RunDate:    model.FormatRunDate(runDate, time.UTC),
		Methods:    map[string]bool{"/acme.demo.v1.Demo/Do": true},
		Network:    model.Network{SN: "net", Internal: app + ":8080"},
		Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
		Meta:       model.Meta{Env: env, AppID: app, Version: "v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rb == nil {
		return string(b)
	}
	f, err := model.DecodeFields(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.SetJSON(model.MemberRegisteredBy, rb); err != nil {
		t.Fatal(err)
	}
	if err := f.SetJSON(model.MemberKeepalive, keepalive); err != nil {
		t.Fatal(err)
	}
	return string(f.Bytes())
}

func boundTo(ns, pod, uid string) *model.RegisteredBy {
	return &model.RegisteredBy{Username: "system:serviceaccount:" + ns + ":app", UID: "sa", Namespace: ns,
		Pod: &model.PodRef{Name: pod, UID: uid}}
}

func pod(ns, name, uid string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
}

// fakePods serves pods per namespace and counts the LISTs.
type fakePods struct {
	mu    sync.Mutex
	pods  map[string][]corev1.Pod
	fail  map[string]bool
	lists map[string]int
}

func (f *fakePods) ListPods(_ context.Context, ns string) ([]corev1.Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lists == nil {
		f.lists = map[string]int{}
	}
	f.lists[ns]++
	if f.fail[ns] {
		return nil, fmt.Errorf("list pods in namespace %s: forbidden", ns)
	}
	return slices.Clone(f.pods[ns]), nil
}

func (f *fakePods) set(ns string, pods ...corev1.Pod) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pods == nil {
		f.pods = map[string][]corev1.Pod{}
	}
	f.pods[ns] = pods
}

func configMap(ns, env string, data map[string]string) corev1.ConfigMap {
	return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: model.ConfigMapName(env)}, Data: data}
}

type fixture struct {
	mem    *store.Memory
	writer *write.Writer
	pods   *fakePods
	clock  *settableClock
	reg    *prometheus.Registry
	logs   *bytes.Buffer
	keeper *Keeper
}

func newFixture(t *testing.T, gcAfter time.Duration, seed ...corev1.ConfigMap) *fixture {
	t.Helper()
	mem, err := store.NewMemory(seed...)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{mem: mem, pods: &fakePods{}, clock: &settableClock{now: t0}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}}
	f.writer, err = write.New(write.Options{Store: mem, Now: f.clock.Now,
		Backoff: wait.Backoff{Steps: 5, Duration: time.Millisecond, Factor: 1.5, Jitter: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.writer.Close)
	f.keeper, err = NewKeeper(Options{
		ConfigMaps: mem,
		Pods:       f.pods,
		Writer:     f.writer,
		Namespaces: []string{"firefly", "team-b"},
		GCAfter:    gcAfter,
		Now:        f.clock.Now,
		Log:        zerolog.New(f.logs),
		Registerer: f.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) data(t *testing.T, ns, env string) map[string]string {
	t.Helper()
	cm, err := f.mem.Get(context.Background(), ns, model.ConfigMapName(env))
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

func runDate(t *testing.T, raw string) time.Time {
	t.Helper()
	var v struct {
		RunDate string `json:"run_date"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatal(err)
	}
	rd, err := model.ParseRunDate(v.RunDate, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

func TestCycleKeepaliveAndGC(t *testing.T) {
	const ttl = 10 * time.Second
	fresh := t0.Add(-2 * time.Second)
	longDead := t0.Add(-time.Hour)
	seed := map[string]string{
		"running.1":     entryJSON(t, "prod", "running", 1, fresh, boundTo("firefly", "running-0", "uid-running"), model.KeepalivePod),
		"gone.2":        entryJSON(t, "prod", "gone", 2, fresh, boundTo("firefly", "gone-0", "uid-gone"), model.KeepalivePod),
		"replaced.3":    entryJSON(t, "prod", "replaced", 3, fresh, boundTo("firefly", "replaced-0", "uid-old"), model.KeepalivePod),
		"terminating.4": entryJSON(t, "prod", "terminating", 4, fresh, boundTo("firefly", "terminating-0", "uid-term"), model.KeepalivePod),
		"finished.5":    entryJSON(t, "prod", "finished", 5, fresh, boundTo("firefly", "finished-0", "uid-done"), model.KeepalivePod),
		"client.6":      entryJSON(t, "prod", "client", 6, fresh, boundTo("firefly", "client-0", "uid-client"), model.KeepaliveClient),
		"library.7":     entryJSON(t, "prod", "library", 7, longDead, nil, ""),
		"alive.8":       entryJSON(t, "prod", "alive", 8, fresh, nil, ""),
		"corrupt.9":     `{"run_date":"2020-01-01 00:00:00"`,
		// Pod-bound, but its pods cannot be listed: GC decides, and it is young.
		"unlisted.10": entryJSON(t, "prod", "unlisted", 10, fresh, boundTo("locked", "unlisted-0", "uid-unlisted"), model.KeepalivePod),
	}
	other := map[string]string{
		// An admin registered it from another namespace: its pod lives there.
		"remote.11": entryJSON(t, "qa", "remote", 11, fresh, boundTo("firefly", "remote-0", "uid-remote"), model.KeepalivePod),
	}
	f := newFixture(t, 15*time.Minute, configMap("firefly", "prod", seed), configMap("team-b", "qa", other))
	now := metav1.NewTime(t0)
	terminating := pod("firefly", "terminating-0", "uid-term")
	terminating.DeletionTimestamp = &now
	finished := pod("firefly", "finished-0", "uid-done")
	finished.Status.Phase = corev1.PodSucceeded
	f.pods.set("firefly",
		pod("firefly", "running-0", "uid-running"),
		pod("firefly", "replaced-0", "uid-new"),
		terminating, finished,
		pod("firefly", "client-0", "uid-client"),
		pod("firefly", "remote-0", "uid-remote"),
	)
	f.pods.fail = map[string]bool{"locked": true}

	// Cycles every TTL/2 for a minute: pod-bound entries of running pods
	// stay alive throughout, without any client heartbeat.
	for i := 0; i < 12; i++ {
		err := f.keeper.Cycle(t.Context())
		if err == nil || !strings.Contains(err.Error(), "locked") {
			t.Fatalf("cycle %d: error %v, want the failed pod LIST of namespace locked", i, err)
		}
		for _, k := range []string{"running.1"} {
			raw, ok := f.data(t, "firefly", "prod")[k]
			if !ok {
				t.Fatalf("cycle %d: %s was removed", i, k)
			}
			if age := f.clock.Now().Sub(runDate(t, raw)); age > ttl {
				t.Fatalf("cycle %d: %s is %s old, past the TTL", i, k, age)
			}
		}
		f.clock.advance(ttl / 2)
	}

	data := f.data(t, "firefly", "prod")
	var keys []string
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// alive.8 and unlisted.10 went stale during the minute, but are far
	// younger than GC's 15 minutes.
	if got, want := strings.Join(keys, " "), "alive.8 client.6 corrupt.9 running.1 unlisted.10"; got != want {
		t.Errorf("entries left: %s, want %s", got, want)
	}
	for _, k := range []string{"client.6", "alive.8", "corrupt.9", "unlisted.10"} {
		if data[k] != seed[k] {
			t.Errorf("%s was changed: %s", k, data[k])
		}
	}
	if raw := f.data(t, "team-b", "qa")["remote.11"]; raw == "" || !runDate(t, raw).After(fresh) {
		t.Errorf("the entry whose pod lives in another namespace was not kept alive: %q", raw)
	}

	// One pod LIST per namespace per cycle, none for namespaces without
	// pod-bound entries.
	if f.pods.lists["firefly"] != 12 || f.pods.lists["locked"] != 12 || len(f.pods.lists) != 2 {
		t.Errorf("pod LISTs per namespace: %v, want 12 each for firefly and locked", f.pods.lists)
	}
	if v := testutil.ToFloat64(f.keeper.m.podGoneRemoved); v != 4 {
		t.Errorf("registry_api_keepalive_removed_total = %v, want 4", v)
	}
	if v := testutil.ToFloat64(f.keeper.m.gcRemoved); v != 1 {
		t.Errorf("registry_api_gc_removed_total = %v, want 1", v)
	}
	if v := testutil.ToFloat64(f.keeper.m.refreshed); v != 24 {
		t.Errorf("registry_api_keepalive_refreshed_total = %v, want 24 (2 entries, 12 cycles)", v)
	}

	// Every removal is logged with what identifies it.
	removals := 0
	for line := range strings.Lines(f.logs.String()) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		msg, _ := l["message"].(string)
		if !strings.HasPrefix(msg, "removed registry entry") {
			continue
		}
		removals++
		for _, field := range []string{"env", "namespace", "key", "app", "lease", "age", "reason"} {
			if _, ok := l[field]; !ok {
				t.Errorf("removal log lacks %s: %s", field, line)
			}
		}
		if l["key"] == "library.7" && (l["reason"] != "stale" || l["app"] != "library" || l["age"] != float64(time.Hour.Milliseconds())) {
			t.Errorf("GC removal logged as %s", line)
		}
	}
	if removals != 5 {
		t.Errorf("%d removals logged, want 5:\n%s", removals, f.logs.String())
	}
}

func TestCycleGC(t *testing.T) {
	const gcAfter = 15 * time.Minute
	seed := map[string]string{
		"dead.1":    entryJSON(t, "prod", "dead", 1, t0.Add(-gcAfter-time.Second), nil, ""),
		"edge.2":    entryJSON(t, "prod", "edge", 2, t0.Add(-gcAfter), nil, ""),
		"alive.3":   entryJSON(t, "prod", "alive", 3, t0.Add(-time.Second), nil, ""),
		"client.4":  entryJSON(t, "prod", "client", 4, t0.Add(-time.Hour), boundTo("firefly", "p", "u"), model.KeepaliveClient),
		"future.5":  entryJSON(t, "prod", "future", 5, t0.Add(time.Hour), nil, ""),
		"no-date.6": `{"lease_id":6,"meta":{"env":"prod","app_id":"no-date"}}`,
	}
	t.Run("enabled", func(t *testing.T) {
		f := newFixture(t, gcAfter, configMap("firefly", "prod", seed))
		if err := f.keeper.Cycle(t.Context()); err != nil {
			t.Fatal(err)
		}
		data := f.data(t, "firefly", "prod")
		for k := range seed {
			_, kept := data[k]
			if wantKept := k != "dead.1" && k != "client.4"; kept != wantKept {
				t.Errorf("%s kept = %v, want %v", k, kept, wantKept)
			}
		}
		if len(f.pods.lists) != 0 {
			t.Errorf("pods listed without pod-bound entries: %v", f.pods.lists)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		f := newFixture(t, 0, configMap("firefly", "prod", seed))
		f.clock.advance(24 * time.Hour)
		if err := f.keeper.Cycle(t.Context()); err != nil {
			t.Fatal(err)
		}
		if data := f.data(t, "firefly", "prod"); len(data) != len(seed) {
			t.Errorf("GC disabled, yet %d of %d entries are left", len(data), len(seed))
		}
	})
}

// A heartbeat that lands between the leader's LIST and its write keeps the
// entry: the writer re-checks staleness on the fresh copy.
func TestCycleNeverRemovesAJustHeartbeatedEntry(t *testing.T) {
	seed := map[string]string{"a.1": entryJSON(t, "prod", "a", 1, t0.Add(-time.Hour), nil, "")}
	f := newFixture(t, 15*time.Minute, configMap("firefly", "prod", seed))
	lister := &heartbeatingLister{ConfigMapLister: f.mem, after: func() {
		if _, err := f.writer.Heartbeat(context.Background(), "firefly", "prod", "a", 1); err != nil {
			t.Error(err)
		}
	}}
	f.keeper.opts.ConfigMaps = lister
	if err := f.keeper.Cycle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.data(t, "firefly", "prod")["a.1"]; !ok {
		t.Fatal("the entry heartbeated after the LIST was removed")
	}
	if v := testutil.ToFloat64(f.keeper.m.gcRemoved); v != 0 {
		t.Errorf("registry_api_gc_removed_total = %v", v)
	}
}

// heartbeatingLister runs after once a LIST has returned.
type heartbeatingLister struct {
	ConfigMapLister
	after func()
	once  sync.Once
}

func (l *heartbeatingLister) List(ctx context.Context, ns string) (*corev1.ConfigMapList, error) {
	out, err := l.ConfigMapLister.List(ctx, ns)
	l.once.Do(l.after)
	return out, err
}

func TestCycleListFailureSkipsNamespace(t *testing.T) {
	seed := map[string]string{"a.1": entryJSON(t, "prod", "a", 1, t0.Add(-time.Hour), nil, "")}
	f := newFixture(t, 15*time.Minute, configMap("firefly", "prod", seed), configMap("team-b", "prod", seed))
	f.keeper.opts.ConfigMaps = failingLister{ConfigMapLister: f.mem, ns: "firefly"}
	err := f.keeper.Cycle(t.Context())
	if err == nil || !strings.Contains(err.Error(), "firefly") {
		t.Fatalf("Cycle = %v, want the failed LIST of firefly", err)
	}
	if _, ok := f.data(t, "team-b", "prod")["a.1"]; ok {
		t.Error("the namespace that could be listed was not cleaned up")
	}
	if v := testutil.ToFloat64(f.keeper.m.cycles.WithLabelValues("error")); v != 1 {
		t.Errorf("failed cycles = %v", v)
	}
}

type failingLister struct {
	ConfigMapLister
	ns string
}

func (l failingLister) List(ctx context.Context, ns string) (*corev1.ConfigMapList, error) {
	if ns == l.ns {
		return nil, errors.New("list configmaps: connection refused")
	}
	return l.ConfigMapLister.List(ctx, ns)
}

func TestPlan(t *testing.T) {
	now := t0
	gcAfter := 15 * time.Minute
	podBound := func(key, podNS, name, uid string, rd time.Time) entry {
		return entry{namespace: "firefly", env: "prod", key: key, runDate: rd, heartbeat: rd, pod: &model.PodRef{Name: name, UID: uid}, podNamespace: podNS}
	}
	plain := func(key string, rd time.Time) entry {
		return entry{namespace: "firefly", env: "prod", key: key, runDate: rd, heartbeat: rd}
	}
	// Too far in the future: they count from when their value was seen.
	ahead := func(key string, seen time.Time) entry {
		return entry{namespace: "firefly", env: "prod", key: key, raw: "value of " + key, runDate: now.Add(8 * time.Hour), heartbeat: seen, ahead: true}
	}
	running := pod("firefly", "p", "uid")
	pods := map[string]map[string]*corev1.Pod{"firefly": {"p": &running}}
	found := []entry{
		podBound("keep", "firefly", "p", "uid", now.Add(-time.Hour)), // even long stale: its pod runs
		podBound("other-uid", "firefly", "p", "uid-2", now),
		podBound("no-pod", "firefly", "q", "uid", now),
		podBound("unknown-ns", "elsewhere", "p", "uid", now.Add(-time.Hour)),
		podBound("unknown-ns-young", "elsewhere", "p", "uid", now),
		plain("stale", now.Add(-gcAfter-time.Nanosecond)),
		plain("edge", now.Add(-gcAfter)),
		plain("unreadable", time.Time{}),
		{namespace: "team-b", env: "qa", key: "qa-stale", runDate: now.Add(-time.Hour), heartbeat: now.Add(-time.Hour)},
		ahead("ahead-stale", now.Add(-gcAfter-time.Nanosecond)),
		ahead("ahead-young", now.Add(-gcAfter)),
		// Version registrations: refreshed and never removed while ready;
		// without a ready endpoint they age like any entry.
		{namespace: "firefly", env: "prod", key: "version-ready", runDate: now.Add(-time.Hour), heartbeat: now.Add(-time.Hour), serviceKept: true},
		{namespace: "firefly", env: "prod", key: "version-down", runDate: now.Add(-time.Hour), heartbeat: now.Add(-time.Hour), serviceKept: true},
		{namespace: "firefly", env: "prod", key: "version-down-young", runDate: now, heartbeat: now, serviceKept: true},
	}
	ready := map[entryRef]bool{{"firefly", "prod", "version-ready"}: true}
	got := plan(found, pods, now, policy{gcAfter: gcAfter, ready: ready, refreshVersions: true})
	var lines []string
	for _, tg := range []target{{"firefly", "prod"}, {"team-b", "qa"}} {
		for _, a := range got[tg] {
			lines = append(lines, fmt.Sprintf("%s/%s %s:%s", tg.namespace, tg.env, a.Kind, a.Key))
			if a.Kind == write.RemoveStale && !a.StaleBefore.Equal(now.Add(-gcAfter)) {
				t.Errorf("%s: StaleBefore %v", a.Key, a.StaleBefore)
			}
			// Only an unchanged value shows a future-dated entry stopped.
			if wantValue := map[string]string{"ahead-stale": "value of ahead-stale"}[a.Key]; a.Value != wantValue {
				t.Errorf("%s: Value %q, want %q", a.Key, a.Value, wantValue)
			}
		}
	}
	want := []string{
		"firefly/prod stale:ahead-stale",
		"firefly/prod keepalive:keep",
		"firefly/prod pod_gone:no-pod",
		"firefly/prod pod_gone:other-uid",
		"firefly/prod stale:stale",
		"firefly/prod stale:unknown-ns",
		"firefly/prod stale:version-down",
		"firefly/prod version_keepalive:version-ready",
		"team-b/qa stale:qa-stale",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("plan:\n %s\nwant\n %s", strings.Join(lines, "\n "), strings.Join(want, "\n "))
	}
	if len(got) != 2 {
		t.Errorf("plan targets %d ConfigMaps, want 2", len(got))
	}
	if p := plan(found, pods, now, policy{ready: ready, refreshVersions: true}); len(p[target{"team-b", "qa"}]) != 0 {
		t.Errorf("GC disabled, yet planned %v", p)
	}
	// The refresh off: a ready version is neither refreshed nor removed.
	// Its readiness unknown: none is removed.
	for name, p := range map[string]policy{
		"refresh off":       {gcAfter: gcAfter, ready: ready},
		"readiness unknown": {gcAfter: gcAfter, refreshVersions: true},
	} {
		for _, a := range plan(found, pods, now, p)[target{"firefly", "prod"}] {
			if strings.HasPrefix(a.Key, "version-ready") || (p.ready == nil && strings.HasPrefix(a.Key, "version")) {
				t.Errorf("%s: planned %s of %s", name, a.Kind, a.Key)
			}
		}
	}
}

func TestRunning(t *testing.T) {
	now := metav1.NewTime(t0)
	p := pod("ns", "p", "uid")
	deleting := p
	deleting.DeletionTimestamp = &now
	failed := p
	failed.Status.Phase = corev1.PodFailed
	ready := p
	ready.Status.Phase = corev1.PodRunning
	for _, tt := range []struct {
		name string
		pod  *corev1.Pod
		uid  string
		want bool
	}{
		{"pending", &p, "uid", true},
		{"running", &ready, "uid", true},
		{"absent", nil, "uid", false},
		{"replaced", &p, "other", false},
		{"terminating", &deleting, "uid", false},
		{"failed", &failed, "uid", false},
	} {
		if got := running(tt.pod, tt.uid); got != tt.want {
			t.Errorf("%s: running = %v", tt.name, got)
		}
	}
}

func TestNewKeeperRejects(t *testing.T) {
	mem, _ := store.NewMemory()
	w, _ := write.New(write.Options{Store: mem})
	defer w.Close()
	for _, o := range []Options{
		{Writer: w, Namespaces: []string{"a"}},
		{ConfigMaps: mem, Namespaces: []string{"a"}},
		{ConfigMaps: mem, Writer: w},
		{ConfigMaps: mem, Writer: w, Namespaces: []string{"a"}, GCAfter: -1},
	} {
		if _, err := NewKeeper(o); err == nil {
			t.Errorf("NewKeeper(%+v) succeeded", o)
		}
	}
}

// utc8Wall is the run_date a writer in UTC+8 writes at t: its local wall
// clock, which a reader in UTC takes for a time 8 hours ahead.
func utc8Wall(t time.Time) time.Time {
	w := t.In(time.FixedZone("UTC+8", 8*3600))
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, time.UTC)
}

// setEntry rewrites one entry of ff-registry-<env>, as a heartbeat does.
func (f *fixture) setEntry(t *testing.T, ns, env, key, value string) {
	t.Helper()
	cm, err := f.mem.Get(context.Background(), ns, model.ConfigMapName(env))
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[key] = value
	if _, err := f.mem.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

// An entry whose run_date is hours ahead is collected GCAfter after its value
// last changed, never while it still changes; one within the tolerance is
// collected by its run_date, as any other.
func TestCycleGCRunDateInFuture(t *testing.T) {
	const gcAfter = 15 * time.Minute
	ahead := func(at time.Time) string { return entryJSON(t, "prod", "ahead", 1, utc8Wall(at), nil, "") }
	seed := map[string]string{
		"ahead.1":  ahead(t0),
		"honest.2": entryJSON(t, "prod", "honest", 2, t0.Add(time.Minute), nil, ""),
	}
	f := newFixture(t, gcAfter, configMap("firefly", "prod", seed))
	cycle := func() {
		t.Helper()
		if err := f.keeper.Cycle(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	present := func(key string) bool {
		_, ok := f.data(t, "firefly", "prod")[key]
		return ok
	}
	cycle()

	// Heartbeats every 5 minutes for 40 minutes, far past GCAfter from the
	// first sighting: kept. A cycle between two heartbeats sees no change.
	for i := 0; i < 8; i++ {
		f.clock.advance(5 * time.Minute)
		f.setEntry(t, "firefly", "prod", "ahead.1", ahead(f.clock.Now()))
		cycle()
		f.clock.advance(time.Minute)
		cycle()
		f.clock.advance(-time.Minute)
		if !present("ahead.1") {
			t.Fatalf("heartbeat %d: an entry whose value still changes was removed", i)
		}
	}
	lastChange := f.clock.Now()
	if present("honest.2") {
		t.Error("an entry within the tolerance survived GCAfter past its run_date")
	}

	// The heartbeats stop: kept until GCAfter after the last change, then gone.
	f.clock.advance(gcAfter)
	cycle()
	if !present("ahead.1") {
		t.Fatal("removed exactly GCAfter after its last change")
	}
	f.clock.advance(time.Second)
	cycle()
	if present("ahead.1") {
		t.Fatalf("still there %s after its last change, its run_date %s ahead", f.clock.Now().Sub(lastChange), 8*time.Hour)
	}
	if v := testutil.ToFloat64(f.keeper.m.gcRemoved); v != 2 {
		t.Errorf("registry_api_gc_removed_total = %v, want 2", v)
	}
	if !strings.Contains(f.logs.String(), `"run_date_in_future":true`) {
		t.Errorf("the removal's log does not say why:\n%s", f.logs.String())
	}
	// What it remembered of the entry goes with the next cycle that misses it.
	cycle()
	if len(f.keeper.seen) != 0 {
		t.Errorf("the keeper still remembers %d entries that are gone", len(f.keeper.seen))
	}
}

// A future-dated entry that heartbeats between the leader's LIST and its
// write survives: its value is no longer the one the leader judged.
func TestCycleNeverRemovesAJustHeartbeatedFutureEntry(t *testing.T) {
	const gcAfter = 15 * time.Minute
	ahead := func(at time.Time) string { return entryJSON(t, "prod", "ahead", 1, utc8Wall(at), nil, "") }
	f := newFixture(t, gcAfter, configMap("firefly", "prod", map[string]string{"ahead.1": ahead(t0)}))
	if err := f.keeper.Cycle(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(gcAfter + time.Second)
	f.keeper.opts.ConfigMaps = &heartbeatingLister{ConfigMapLister: f.mem, after: func() {
		f.setEntry(t, "firefly", "prod", "ahead.1", ahead(f.clock.Now()))
	}}
	if err := f.keeper.Cycle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.data(t, "firefly", "prod")["ahead.1"]; !ok {
		t.Fatal("the future-dated entry heartbeated after the LIST was removed")
	}
	if v := testutil.ToFloat64(f.keeper.m.gcRemoved); v != 0 {
		t.Errorf("registry_api_gc_removed_total = %v", v)
	}
	// Its new value was not seen by that cycle; the next one sees it and
	// counts from there.
	f.keeper.opts.ConfigMaps = f.mem
	if err := f.keeper.Cycle(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.data(t, "firefly", "prod")["ahead.1"]; !ok {
		t.Fatal("removed at its first sighting after a heartbeat")
	}
}

func TestScanMarksVersionRegistrations(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "firefly", Name: "ff-registry-prod"}, Data: map[string]string{
		"catalog-service.1": `{"lease_id":1,"run_date":"2026-11-26 12:00:00","meta":{"env":"prod","app_id":"catalog-service","version":"v1"},"keepalive":"service"}`,
		"catalog-service.2": `{"lease_id":2,"run_date":"2026-11-26 12:00:00","meta":{"env":"prod","app_id":"catalog-service","version":"v1"}}`,
	}}
	for _, e := range scan(cm, time.UTC) {
		if want := e.key == "catalog-service.1"; e.serviceKept != want {
			t.Errorf("%s: serviceKept %v, want %v", e.key, e.serviceKept, want)
		}
	}
}
