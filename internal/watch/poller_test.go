package watch

import (
	"bytes"
	"context"
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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
)

var baseTime = time.Date(2026, 11, 26, 12, 24, 22, 0, time.UTC)

func entry(env, app string, lease int64, runDate time.Time, methods ...string) string {
	m := make([]string, len(methods))
	for i, x := range methods {
		m[i] = fmt.Sprintf("%q:true", x)
	}
	return fmt.Sprintf(`{"proto_count":1,"lease_id":%d,"run_date":%q,"methods":{%s},"network":{"sn":"n","internal":"%s:8080","external":""},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":%q,"app_id":%q,"version":"v1"}}`,
		lease, runDate.UTC().Format(time.DateTime), strings.Join(m, ","), app, env, app)
}

func configMap(ns, name, rv string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv},
		Data:       data,
	}
}

// counting is a memory store that records the poller's reads, and fails
// them while fail is set.
type counting struct {
	*store.Memory
	mu                     sync.Mutex
	metaLists, lists, gets []string // namespaces listed, namespace/name read
	fail                   error
	// beforeGet runs before each Get reads the store; an error fails it.
	beforeGet func(namespace, name string) error
}

func (c *counting) record(into *[]string, what string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	*into = append(*into, what)
	return c.fail
}

func (c *counting) ListMeta(ctx context.Context, namespace string) (*metav1.PartialObjectMetadataList, error) {
	if err := c.record(&c.metaLists, namespace); err != nil {
		return nil, err
	}
	return c.Memory.ListMeta(ctx, namespace)
}

func (c *counting) List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error) {
	if err := c.record(&c.lists, namespace); err != nil {
		return nil, err
	}
	return c.Memory.List(ctx, namespace)
}

func (c *counting) Get(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	if err := c.record(&c.gets, namespace+"/"+name); err != nil {
		return nil, err
	}
	if c.beforeGet != nil {
		if err := c.beforeGet(namespace, name); err != nil {
			return nil, err
		}
	}
	return c.Memory.Get(ctx, namespace, name)
}

// reads is what the poller read since the last call to take.
type reads struct{ metaLists, lists, gets []string }

func (c *counting) take() reads {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := reads{c.metaLists, c.lists, c.gets}
	c.metaLists, c.lists, c.gets = nil, nil, nil
	return r
}

func (r reads) String() string {
	return fmt.Sprintf("metadata LISTs %q, LISTs %q, GETs %q", r.metaLists, r.lists, r.gets)
}

func (r reads) equal(o reads) bool {
	return slices.Equal(r.metaLists, o.metaLists) && slices.Equal(r.lists, o.lists) && slices.Equal(r.gets, o.gets)
}

type fixture struct {
	store  *counting
	poller *Poller
	logs   *bytes.Buffer
}

func newFixture(t *testing.T, namespaces []string, cms ...*corev1.ConfigMap) *fixture {
	t.Helper()
	seed := make([]corev1.ConfigMap, len(cms))
	for i, cm := range cms {
		seed[i] = *cm
	}
	mem, err := store.NewMemory(seed...)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: &counting{Memory: mem}, logs: &bytes.Buffer{}}
	p, err := New(f.store, Options{
		Namespaces: namespaces,
		TTL:        10 * time.Second,
		Log:        zerolog.New(f.logs),
		Now:        func() time.Time { return baseTime },
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.poller = p
	return f
}

// update replaces cm's data in the store, as another replica's write does,
// and returns what the store holds now.
func (f *fixture) update(t *testing.T, cm *corev1.ConfigMap) *corev1.ConfigMap {
	t.Helper()
	cm = cm.DeepCopy()
	cm.ResourceVersion = ""
	out, err := f.store.Memory.Update(context.Background(), cm)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) create(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	cm = cm.DeepCopy()
	cm.ResourceVersion = ""
	if _, err := f.store.Memory.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) delete(t *testing.T, namespace, name string) {
	t.Helper()
	if err := f.store.Delete(context.Background(), namespace, name); err != nil {
		t.Fatal(err)
	}
}

func TestPollIndexesRegistryConfigMapsOnly(t *testing.T) {
	f := newFixture(t, []string{"firefly"},
		configMap("firefly", "ff-registry-prod", "10", map[string]string{
			"user-service.1": entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		}),
		configMap("firefly", "kube-root-ca.crt", "11", map[string]string{"ca.crt": "x"}),
		configMap("other", "ff-registry-prod", "12", map[string]string{
			"order-service.2": entry("prod", "order-service", 2, baseTime, "/acme.order.v1.OrderService/Get"),
		}),
	)
	if f.poller.Snapshot().Ready() {
		t.Fatal("ready before the first poll")
	}
	f.poller.Poll(context.Background())

	snap := f.poller.Snapshot()
	if !snap.Ready() {
		t.Fatal("not ready after a successful poll")
	}
	if got := strings.Join(snap.EnvNames, ","); got != "prod" {
		t.Fatalf("envs = %q, want prod", got)
	}
	prod := snap.Envs["prod"]
	if _, ok := prod.Apps["order-service"]; ok {
		t.Error("indexed a ConfigMap of an unwatched namespace")
	}
	if _, ok := prod.Methods["/acme.user.v1.UserService/Login"]; !ok {
		t.Error("method of the watched namespace missing")
	}
	// The unrelated ConfigMap's data is never read.
	want := reads{metaLists: []string{"firefly"}, gets: []string{"firefly/ff-registry-prod"}}
	if got := f.store.take(); !got.equal(want) {
		t.Fatalf("reads: %s; want %s", got, want)
	}
}

func TestPollAllNamespacesMergesEnvs(t *testing.T) {
	f := newFixture(t, []string{""},
		configMap("a", "ff-registry-prod", "10", map[string]string{
			"user-service.1": entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		}),
		configMap("b", "ff-registry-prod", "11", map[string]string{
			"order-service.2": entry("prod", "order-service", 2, baseTime, "/acme.order.v1.OrderService/Get"),
		}),
	)
	f.poller.Poll(context.Background())
	prod := f.poller.Snapshot().Envs["prod"]
	if got := strings.Join(prod.Namespaces, ","); got != "a,b" {
		t.Fatalf("namespaces = %q, want a,b", got)
	}
	if len(prod.Apps) != 2 {
		t.Fatalf("apps = %d, want 2", len(prod.Apps))
	}
	if got := prod.Apps["order-service"].Nodes[0].Namespace; got != "b" {
		t.Errorf("node namespace = %q, want b", got)
	}
	// Both are new: more than a quarter of the registry, so one LIST.
	want := reads{metaLists: []string{""}, lists: []string{""}}
	if got := f.store.take(); !got.equal(want) {
		t.Fatalf("reads: %s; want the cluster-wide %s", got, want)
	}
}

func TestPollReparsesOnlyWhatChanged(t *testing.T) {
	data := map[string]string{
		"user-service.1": entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		"user-service.2": entry("prod", "user-service", 2, baseTime, "/acme.user.v1.UserService/Login"),
	}
	f := newFixture(t, []string{"firefly"},
		configMap("firefly", "ff-registry-prod", "10", data),
		configMap("firefly", "ff-registry-dev", "11", map[string]string{
			"user-service.3": entry("dev", "user-service", 3, baseTime, "/acme.user.v1.UserService/Login"),
		}),
	)
	f.poller.Poll(context.Background())
	if got := testutil.ToFloat64(f.poller.m.entriesParsed); got != 3 {
		t.Fatalf("parsed %v entries on the first poll, want 3", got)
	}
	devBefore := f.poller.Snapshot().Envs["dev"]

	f.poller.Poll(context.Background())
	if got := testutil.ToFloat64(f.poller.m.entriesParsed); got != 3 {
		t.Fatalf("parsed %v entries after an unchanged poll, want still 3", got)
	}

	// One heartbeat: only that entry is parsed again, the other env is shared.
	changed := map[string]string{
		"user-service.1": data["user-service.1"],
		"user-service.2": entry("prod", "user-service", 2, baseTime.Add(5*time.Second), "/acme.user.v1.UserService/Login"),
	}
	f.update(t, configMap("firefly", "ff-registry-prod", "12", changed))
	f.poller.Poll(context.Background())
	if got := testutil.ToFloat64(f.poller.m.entriesParsed); got != 4 {
		t.Fatalf("parsed %v entries after one heartbeat, want 4", got)
	}
	snap := f.poller.Snapshot()
	if snap.Envs["dev"] != devBefore {
		t.Error("unchanged env was re-indexed")
	}
	nodes := snap.Envs["prod"].Apps["user-service"].Nodes
	if nodes[0].LeaseID != 2 {
		t.Errorf("freshest node = %d, want 2 after its heartbeat", nodes[0].LeaseID)
	}
}

func TestPollDropsDeletedConfigMaps(t *testing.T) {
	f := newFixture(t, []string{"firefly"},
		configMap("firefly", "ff-registry-prod", "10", map[string]string{
			"user-service.1": entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		}),
	)
	f.poller.Poll(context.Background())
	f.delete(t, "firefly", "ff-registry-prod")
	f.poller.Poll(context.Background())
	if n := len(f.poller.Snapshot().Envs); n != 0 {
		t.Fatalf("envs = %d after the ConfigMap was deleted, want 0", n)
	}
}

func TestPollEmptyConfigMapStillMakesTheEnv(t *testing.T) {
	f := newFixture(t, []string{"firefly"}, configMap("firefly", "ff-registry-qa", "10", nil))
	f.poller.Poll(context.Background())
	qa, ok := f.poller.Snapshot().Envs["qa"]
	if !ok {
		t.Fatal("env of an empty ConfigMap missing")
	}
	if got := strings.Join(qa.Namespaces, ","); got != "firefly" {
		t.Errorf("namespaces = %q, want firefly", got)
	}
}

func TestPollErrorKeepsLastSnapshotAndLogsOncePerStreak(t *testing.T) {
	f := newFixture(t, []string{"firefly"},
		configMap("firefly", "ff-registry-prod", "10", map[string]string{
			"user-service.1": entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		}),
	)
	f.poller.Poll(context.Background())
	good := f.poller.Snapshot()
	syncedAt := good.SyncedAt()

	f.store.fail = errors.New("connection refused")
	for range 5 {
		f.poller.Poll(context.Background())
	}
	snap := f.poller.Snapshot()
	if _, ok := snap.Envs["prod"].Methods["/acme.user.v1.UserService/Login"]; !ok {
		t.Fatal("lost the last good data during an outage")
	}
	if !snap.SyncedAt().Equal(syncedAt) {
		t.Errorf("synced_at moved during an outage: %v -> %v", syncedAt, snap.SyncedAt())
	}
	if got := testutil.ToFloat64(f.poller.m.pollErrors.WithLabelValues("firefly")); got != 5 {
		t.Errorf("poll errors = %v, want 5", got)
	}
	if n := strings.Count(f.logs.String(), "listing registry configmaps failed"); n != 1 {
		t.Errorf("logged the failure %d times in one streak, want once:\n%s", n, f.logs)
	}

	f.store.fail = nil
	f.poller.Poll(context.Background())
	if n := strings.Count(f.logs.String(), "recovered"); n != 1 {
		t.Errorf("logged recovery %d times, want once", n)
	}
	f.store.fail = errors.New("connection refused")
	f.poller.Poll(context.Background())
	if n := strings.Count(f.logs.String(), "listing registry configmaps failed"); n != 2 {
		t.Errorf("a new streak logged %d failures in total, want 2", n)
	}
}

func TestApplyReadsYourWritesAndOlderListsDoNotRegress(t *testing.T) {
	f := newFixture(t, []string{"firefly"},
		configMap("firefly", "ff-registry-prod", "10", map[string]string{
			"user-service.1": entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		}),
	)
	f.poller.Poll(context.Background())

	written := configMap("firefly", "ff-registry-prod", "20", map[string]string{
		"user-service.1":  entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		"order-service.2": entry("prod", "order-service", 2, baseTime, "/acme.order.v1.OrderService/Get"),
	})
	f.poller.Apply(written)
	if _, ok := f.poller.Snapshot().Envs["prod"].Apps["order-service"]; !ok {
		t.Fatal("applied write not visible at once")
	}
	// The watch cache may still hand out resourceVersion 10 for a while.
	f.poller.Poll(context.Background())
	if _, ok := f.poller.Snapshot().Envs["prod"].Apps["order-service"]; !ok {
		t.Fatal("an older LIST result regressed an applied write")
	}

	f.poller.Apply(configMap("elsewhere", "ff-registry-prod", "30", map[string]string{
		"x.3": entry("prod", "x", 3, baseTime, "/a.B/C"),
	}))
	if _, ok := f.poller.Snapshot().Envs["prod"].Apps["x"]; ok {
		t.Error("applied a ConfigMap of an unwatched namespace")
	}
}

// A ConfigMap this replica creates is missing from a LIST read at an earlier
// resourceVersion: one in flight while the write was applied, or served by a
// watch cache that has not caught up. That LIST must not hide the write; a
// LIST read after the ConfigMap's version that lacks it means it was deleted.
func TestListOlderThanAnAppliedCreateKeepsIt(t *testing.T) {
	var list *corev1.ConfigMapList
	lister := served(func(context.Context, string) (*corev1.ConfigMapList, error) { return list, nil })
	p, err := New(lister, Options{
		Namespaces: []string{"firefly"},
		Log:        zerolog.Nop(),
		Now:        func() time.Time { return baseTime },
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	listAt := func(rv string, items ...corev1.ConfigMap) *corev1.ConfigMapList {
		l := &corev1.ConfigMapList{Items: items}
		l.ResourceVersion = rv
		return l
	}
	other := *configMap("firefly", "ff-registry-dev", "5", map[string]string{
		"user-service.1": entry("dev", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
	})
	list = listAt("10", other)
	p.Poll(context.Background())

	p.Apply(configMap("firefly", "ff-registry-prod", "11", map[string]string{
		"order-service.2": entry("prod", "order-service", 2, baseTime, "/acme.order.v1.OrderService/Get"),
	}))
	p.Poll(context.Background()) // still the view at 10
	if _, ok := p.Snapshot().Envs["prod"]; !ok {
		t.Fatal("a LIST older than the replica's create hid the ConfigMap it created")
	}
	if _, ok := p.Snapshot().Envs["dev"]; !ok {
		t.Fatal("a ConfigMap the LIST still holds was dropped")
	}

	list = listAt("12", other) // read after the create, and without it: deleted
	p.Poll(context.Background())
	if _, ok := p.Snapshot().Envs["prod"]; ok {
		t.Error("a ConfigMap deleted after the replica wrote it is still served")
	}

	// A LIST without a version to compare (not an API server's) is taken as
	// the whole truth, as before.
	p.Apply(configMap("firefly", "ff-registry-prod", "13", map[string]string{
		"order-service.2": entry("prod", "order-service", 2, baseTime, "/acme.order.v1.OrderService/Get"),
	}))
	list = listAt("", other)
	p.Poll(context.Background())
	if _, ok := p.Snapshot().Envs["prod"]; ok {
		t.Error("a LIST with no resourceVersion did not drop what it lacks")
	}
	if _, ok := p.Snapshot().Envs["dev"]; !ok {
		t.Error("dev is gone")
	}
}

func TestRunPollsUntilCancelled(t *testing.T) {
	f := newFixture(t, []string{"firefly"}, configMap("firefly", "ff-registry-prod", "10", nil))
	f.poller.opts.Interval = time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.poller.Run(ctx)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !f.poller.Snapshot().Ready() {
		if time.Now().After(deadline) {
			t.Fatal("Run did not sync within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestSnapshotMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	mem, err := store.NewMemory(*configMap("firefly", "ff-registry-prod", "10", map[string]string{
		"user-service.1":  entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		"user-service.2":  entry("prod", "user-service", 2, baseTime.Add(-time.Minute), "/acme.user.v1.UserService/Login"),
		"order-service-3": entry("prod", "order-service", 3, baseTime, "/acme.user.v1.UserService/Login"),
		"broken":          "{",
	}))
	if err != nil {
		t.Fatal(err)
	}
	now := baseTime.Add(3 * time.Second)
	p, err := New(mem, Options{
		Namespaces: []string{"firefly"}, Registerer: reg, Log: zerolog.Nop(),
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Poll(context.Background())
	now = now.Add(4 * time.Second)
	want := `
# HELP registry_api_entries Registry entries by env and state: alive, stale, invalid, warning.
# TYPE registry_api_entries gauge
registry_api_entries{env="prod",state="alive"} 2
registry_api_entries{env="prod",state="invalid"} 1
registry_api_entries{env="prod",state="stale"} 1
registry_api_entries{env="prod",state="warning"} 1
# HELP registry_api_method_conflicts Methods claimed by more than one app, by env.
# TYPE registry_api_method_conflicts gauge
registry_api_method_conflicts{env="prod"} 1
# HELP registry_api_snapshot_age_seconds Seconds since the oldest watched namespace was last read successfully.
# TYPE registry_api_snapshot_age_seconds gauge
registry_api_snapshot_age_seconds 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"registry_api_entries", "registry_api_method_conflicts", "registry_api_snapshot_age_seconds"); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("no namespaces accepted")
	}
	if _, err := New(nil, Options{Namespaces: []string{"", "a"}}); err == nil {
		t.Error("all namespaces combined with a named one accepted")
	}
}

// served is a Reader over whatever list its function returns: its
// metadata, its objects by name, or the whole list.
type served func(ctx context.Context, namespace string) (*corev1.ConfigMapList, error)

func (f served) List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error) {
	return f(ctx, namespace)
}

func (f served) ListMeta(ctx context.Context, namespace string) (*metav1.PartialObjectMetadataList, error) {
	l, err := f(ctx, namespace)
	if err != nil {
		return nil, err
	}
	meta := &metav1.PartialObjectMetadataList{Items: make([]metav1.PartialObjectMetadata, len(l.Items))}
	meta.ResourceVersion = l.ResourceVersion
	for i := range l.Items {
		meta.Items[i].ObjectMeta = l.Items[i].ObjectMeta
	}
	return meta, nil
}

func (f served) Get(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	l, err := f(ctx, namespace)
	if err != nil {
		return nil, err
	}
	for i := range l.Items {
		if cm := &l.Items[i]; cm.Namespace == namespace && cm.Name == name {
			return cm, nil
		}
	}
	return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), name)
}

func TestPollTimesOutAHungList(t *testing.T) {
	hung := served(func(ctx context.Context, namespace string) (*corev1.ConfigMapList, error) {
		if namespace == "hung" {
			<-ctx.Done() // an API server that accepted the request and never answers
			return nil, ctx.Err()
		}
		return &corev1.ConfigMapList{Items: []corev1.ConfigMap{*configMap(namespace, "ff-registry-prod", "1", map[string]string{
			"user-service.1": entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		})}}, nil
	})
	logs := &bytes.Buffer{}
	p, err := New(hung, Options{
		Namespaces:  []string{"hung", "firefly"},
		ListTimeout: 50 * time.Millisecond,
		Log:         zerolog.New(logs),
		Now:         func() time.Time { return baseTime },
		Registerer:  prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Poll(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Poll blocked on a LIST that never answers")
	}
	if got := testutil.ToFloat64(p.m.pollErrors.WithLabelValues("hung")); got != 1 {
		t.Errorf("poll errors for the hung namespace = %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "context deadline exceeded") {
		t.Errorf("the timeout is not logged:\n%s", logs)
	}
	if _, ok := p.Snapshot().NamespaceSyncedAt["firefly"]; !ok {
		t.Error("the namespace after the hung one was not read")
	}
}

func TestPollThatChangesNothingAnnouncesNothing(t *testing.T) {
	data := map[string]string{
		"user-service.1": entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
	}
	f := newFixture(t, []string{"firefly"}, configMap("firefly", "ff-registry-prod", "10", data))
	now := baseTime
	f.poller.opts.Now = func() time.Time { return now }
	announced := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}

	first := f.poller.Published()
	f.poller.Poll(context.Background())
	if !announced(first) {
		t.Fatal("the first poll that read data announced nothing")
	}
	before := f.poller.Snapshot()
	derived := &struct{}{}
	before.Derived.Store(derived)

	// Nothing changed: the sync time moves on, the indexes stay, nobody wakes.
	quiet := f.poller.Published()
	now = now.Add(2 * time.Second)
	f.poller.Poll(context.Background())
	after := f.poller.Snapshot()
	if announced(quiet) {
		t.Error("a poll that changed nothing announced a snapshot")
	}
	if !after.SyncedAt().Equal(now) {
		t.Errorf("synced at %s after the quiet poll, want %s", after.SyncedAt(), now)
	}
	if after.Envs["prod"] != before.Envs["prod"] || &after.EnvNames[0] != &before.EnvNames[0] {
		t.Error("a quiet poll rebuilt the index")
	}
	if after.Derived.Load() != derived {
		t.Error("a quiet poll dropped what readers derived from the unchanged indexes")
	}

	// A heartbeat changes an entry: announced.
	f.update(t, configMap("firefly", "ff-registry-prod", "11", map[string]string{
		"user-service.1": entry("prod", "user-service", 1, baseTime.Add(5*time.Second), "/acme.user.v1.UserService/Login"),
	}))
	f.poller.Poll(context.Background())
	if !announced(quiet) {
		t.Error("a poll that changed an entry announced nothing")
	}
}

// registryConfigMaps returns n registry ConfigMaps in firefly, of envs
// env-0 to env-<n-1>, each with one instance of user-service.
func registryConfigMaps(n int) []*corev1.ConfigMap {
	cms := make([]*corev1.ConfigMap, n)
	for i := range cms {
		cms[i] = registryConfigMap(i, baseTime)
	}
	return cms
}

// registryConfigMap is env-<i>'s ConfigMap with its instance's run_date at.
func registryConfigMap(i int, at time.Time) *corev1.ConfigMap {
	env := fmt.Sprintf("env-%d", i)
	return configMap("firefly", model.ConfigMapName(env), "", map[string]string{
		"user-service.1": entry(env, "user-service", 1, at, "/acme.user.v1.UserService/Login"),
	})
}

func heartbeatOf(t *testing.T, snap *model.Snapshot, env string) time.Time {
	t.Helper()
	e := snap.Envs[env]
	if e == nil || e.Apps["user-service"] == nil {
		t.Fatalf("no user-service in %s", env)
	}
	return e.Apps["user-service"].Nodes[0].Heartbeat()
}

func TestPollAtRestReadsOnlyMetadata(t *testing.T) {
	cms := append(registryConfigMaps(8), configMap("firefly", "static-assets", "", map[string]string{"bundle.js": strings.Repeat("x", 100<<10)}))
	f := newFixture(t, []string{"firefly"}, cms...)
	f.poller.Poll(context.Background())
	// A cold start: every registry ConfigMap is new, so one LIST reads them.
	want := reads{metaLists: []string{"firefly"}, lists: []string{"firefly"}}
	if got := f.store.take(); !got.equal(want) {
		t.Fatalf("first poll: %s; want %s", got, want)
	}
	parsed := testutil.ToFloat64(f.poller.m.entriesParsed)
	quiet := f.poller.Published()
	for i := range 3 {
		f.poller.Poll(context.Background())
		want := reads{metaLists: []string{"firefly"}}
		if got := f.store.take(); !got.equal(want) {
			t.Fatalf("poll %d at rest: %s; want %s", i+2, got, want)
		}
	}
	if got := testutil.ToFloat64(f.poller.m.entriesParsed); got != parsed {
		t.Errorf("parsed %v entries at rest, want none", got-parsed)
	}
	select {
	case <-quiet:
		t.Error("a poll at rest announced a snapshot")
	default:
	}
	if n := len(f.poller.Snapshot().Envs); n != 8 {
		t.Errorf("%d envs, want 8", n)
	}
}

func TestPollGetsOnlyTheConfigMapsThatMoved(t *testing.T) {
	f := newFixture(t, []string{"firefly"}, registryConfigMaps(8)...)
	f.poller.Poll(context.Background())
	f.store.take()

	beat := baseTime.Add(5 * time.Second)
	f.update(t, registryConfigMap(3, beat))
	f.poller.Poll(context.Background())
	want := reads{metaLists: []string{"firefly"}, gets: []string{"firefly/ff-registry-env-3"}}
	if got := f.store.take(); !got.equal(want) {
		t.Fatalf("after one heartbeat: %s; want %s", got, want)
	}
	if got := heartbeatOf(t, f.poller.Snapshot(), "env-3"); !got.Equal(beat) {
		t.Errorf("env-3's heartbeat = %v, want %v", got, beat)
	}

	// A new env is read; a deleted one is gone without a read.
	f.create(t, registryConfigMap(8, baseTime))
	f.delete(t, "firefly", "ff-registry-env-5")
	f.poller.Poll(context.Background())
	want = reads{metaLists: []string{"firefly"}, gets: []string{"firefly/ff-registry-env-8"}}
	if got := f.store.take(); !got.equal(want) {
		t.Fatalf("after a create and a delete: %s; want %s", got, want)
	}
	snap := f.poller.Snapshot()
	if _, ok := snap.Envs["env-8"]; !ok {
		t.Error("the new env-8 is missing")
	}
	if _, ok := snap.Envs["env-5"]; ok {
		t.Error("the deleted env-5 is still served")
	}

	// Three of eight moved, more than a quarter: one LIST, not three GETs.
	later := baseTime.Add(7 * time.Second)
	for _, i := range []int{0, 1, 2} {
		f.update(t, registryConfigMap(i, later))
	}
	f.poller.Poll(context.Background())
	want = reads{metaLists: []string{"firefly"}, lists: []string{"firefly"}}
	if got := f.store.take(); !got.equal(want) {
		t.Fatalf("after three heartbeats: %s; want %s", got, want)
	}
	for _, env := range []string{"env-0", "env-1", "env-2"} {
		if got := heartbeatOf(t, f.poller.Snapshot(), env); !got.Equal(later) {
			t.Errorf("%s's heartbeat = %v, want %v", env, got, later)
		}
	}
}

// A ConfigMap deleted between the metadata LIST and its GET is gone, as the
// next LIST would say.
func TestPollDropsAConfigMapDeletedBeforeItsGet(t *testing.T) {
	f := newFixture(t, []string{"firefly"}, registryConfigMaps(8)...)
	f.poller.Poll(context.Background())
	f.update(t, registryConfigMap(2, baseTime.Add(time.Second)))
	f.store.beforeGet = func(namespace, name string) error {
		f.delete(t, namespace, name)
		return nil
	}
	f.poller.Poll(context.Background())
	if _, ok := f.poller.Snapshot().Envs["env-2"]; ok {
		t.Error("env-2 is still served after its ConfigMap was deleted")
	}
	if n := len(f.poller.Snapshot().Envs); n != 7 {
		t.Errorf("%d envs, want the 7 others", n)
	}
}

func TestPollFailedGetKeepsTheNamespacesLastGoodData(t *testing.T) {
	f := newFixture(t, []string{"firefly"}, registryConfigMaps(8)...)
	now := baseTime
	f.poller.opts.Now = func() time.Time { return now }
	f.poller.Poll(context.Background())
	synced := f.poller.Snapshot().SyncedAt()

	beat := baseTime.Add(5 * time.Second)
	f.update(t, registryConfigMap(2, beat))
	f.store.beforeGet = func(string, string) error { return errors.New("connection reset by peer") }
	now = now.Add(2 * time.Second)
	f.poller.Poll(context.Background())
	if got := testutil.ToFloat64(f.poller.m.pollErrors.WithLabelValues("firefly")); got != 1 {
		t.Errorf("poll errors = %v, want 1", got)
	}
	snap := f.poller.Snapshot()
	if !snap.SyncedAt().Equal(synced) {
		t.Errorf("synced at %v after a failed read, want still %v", snap.SyncedAt(), synced)
	}
	if got := heartbeatOf(t, snap, "env-2"); !got.Equal(baseTime) {
		t.Errorf("env-2's heartbeat = %v during the failure, want the last good %v", got, baseTime)
	}

	// Not remembered as read: the next poll reads it again.
	f.store.beforeGet = nil
	f.store.take()
	f.poller.Poll(context.Background())
	want := reads{metaLists: []string{"firefly"}, gets: []string{"firefly/ff-registry-env-2"}}
	if got := f.store.take(); !got.equal(want) {
		t.Fatalf("after the failure: %s; want %s", got, want)
	}
	if got := heartbeatOf(t, f.poller.Snapshot(), "env-2"); !got.Equal(beat) {
		t.Errorf("env-2's heartbeat = %v, want %v", got, beat)
	}
}

// The back edge: the ConfigMap a replica's write returned is applied at
// once, and the next poll, whose metadata shows the same resourceVersion,
// does not read it again.
func TestPollDoesNotReadBackAnAppliedWrite(t *testing.T) {
	f := newFixture(t, []string{"firefly"}, registryConfigMaps(8)...)
	f.poller.Poll(context.Background())
	f.store.take()

	written := f.update(t, configMap("firefly", "ff-registry-env-4", "", map[string]string{
		"user-service.1":  entry("env-4", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		"order-service.2": entry("env-4", "order-service", 2, baseTime, "/acme.order.v1.OrderService/Get"),
	}))
	f.poller.Apply(written)
	if _, ok := f.poller.Snapshot().Envs["env-4"].Apps["order-service"]; !ok {
		t.Fatal("the applied write is not served at once")
	}
	f.poller.Poll(context.Background())
	want := reads{metaLists: []string{"firefly"}}
	if got := f.store.take(); !got.equal(want) {
		t.Fatalf("poll after the applied write: %s; want %s", got, want)
	}
	if _, ok := f.poller.Snapshot().Envs["env-4"].Apps["order-service"]; !ok {
		t.Fatal("the applied write is gone after a poll")
	}
}

// A replica that reads endpoints is not ready before it has, even with no
// version registration to index: nothing to re-index, yet it is announced.
func TestAwaitEndpoints(t *testing.T) {
	mem, err := store.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(mem, Options{Namespaces: []string{"firefly"}, AwaitEndpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	p.Poll(t.Context())
	if p.Snapshot().Ready() {
		t.Fatal("ready before SetEndpoints")
	}
	published := p.Published()
	p.SetEndpoints(model.Endpoints{})
	if !p.Snapshot().Ready() {
		t.Error("not ready after SetEndpoints")
	}
	select {
	case <-published:
	default:
		t.Error("becoming ready was not announced")
	}
	p.Poll(t.Context())
	if !p.Snapshot().Ready() {
		t.Error("a later poll made the snapshot unready again")
	}
}
