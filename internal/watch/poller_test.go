package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

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

type fixture struct {
	client *fake.Clientset
	poller *Poller
	logs   *bytes.Buffer
	lists  []metav1.ListOptions
}

func newFixture(t *testing.T, namespaces []string, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{client: fake.NewClientset(objs...), logs: &bytes.Buffer{}}
	f.client.PrependReactor("list", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.lists = append(f.lists, a.(k8stesting.ListActionImpl).ListOptions)
		return false, nil, nil
	})
	p, err := New(unversioned{&store.Kube{Client: f.client}}, Options{
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

// unversioned drops the version a list was read at. The fake clientset
// counts its own list versions apart from the versions the tests give their
// objects, so comparing the two would mean nothing; without one, the poller
// takes each list as the whole truth.
type unversioned struct{ Lister }

func (u unversioned) List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error) {
	list, err := u.Lister.List(ctx, namespace)
	if list != nil {
		list.ResourceVersion = ""
	}
	return list, err
}

func (f *fixture) update(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	if err := f.client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("configmaps"), cm, cm.Namespace); err != nil {
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
	if len(f.lists) != 1 || f.lists[0].ResourceVersion != "0" {
		t.Fatalf("list options = %+v, want one LIST with resourceVersion=0", f.lists)
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
	if len(f.lists) != 1 || f.lists[0].ResourceVersion != "0" {
		t.Fatalf("want one cluster-wide LIST, got %+v", f.lists)
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
	if err := f.client.CoreV1().ConfigMaps("firefly").Delete(context.Background(), "ff-registry-prod", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
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

	failing := true
	f.client.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
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

	failing = false
	f.poller.Poll(context.Background())
	if n := strings.Count(f.logs.String(), "recovered"); n != 1 {
		t.Errorf("logged recovery %d times, want once", n)
	}
	failing = true
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
	var served *corev1.ConfigMapList
	lister := listerFunc(func(context.Context, string) (*corev1.ConfigMapList, error) { return served, nil })
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
	served = listAt("10", other)
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

	served = listAt("12", other) // read after the create, and without it: deleted
	p.Poll(context.Background())
	if _, ok := p.Snapshot().Envs["prod"]; ok {
		t.Error("a ConfigMap deleted after the replica wrote it is still served")
	}

	// A LIST without a version to compare (not an API server's) is taken as
	// the whole truth, as before.
	p.Apply(configMap("firefly", "ff-registry-prod", "13", map[string]string{
		"order-service.2": entry("prod", "order-service", 2, baseTime, "/acme.order.v1.OrderService/Get"),
	}))
	served = listAt("", other)
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
	client := fake.NewClientset(configMap("firefly", "ff-registry-prod", "10", map[string]string{
		"user-service.1":  entry("prod", "user-service", 1, baseTime, "/acme.user.v1.UserService/Login"),
		"user-service.2":  entry("prod", "user-service", 2, baseTime.Add(-time.Minute), "/acme.user.v1.UserService/Login"),
		"order-service-3": entry("prod", "order-service", 3, baseTime, "/acme.user.v1.UserService/Login"),
		"broken":          "{",
	}))
	now := baseTime.Add(3 * time.Second)
	p, err := New(&store.Kube{Client: client}, Options{
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

type listerFunc func(ctx context.Context, namespace string) (*corev1.ConfigMapList, error)

func (f listerFunc) List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error) {
	return f(ctx, namespace)
}

func TestPollTimesOutAHungList(t *testing.T) {
	hung := listerFunc(func(ctx context.Context, namespace string) (*corev1.ConfigMapList, error) {
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

	// A heartbeat changes an entry: announced.
	f.update(t, configMap("firefly", "ff-registry-prod", "11", map[string]string{
		"user-service.1": entry("prod", "user-service", 1, baseTime.Add(5*time.Second), "/acme.user.v1.UserService/Login"),
	}))
	f.poller.Poll(context.Background())
	if !announced(quiet) {
		t.Error("a poll that changed an entry announced nothing")
	}
}
