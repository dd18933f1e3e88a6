package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/acme/registry-api/internal/model"
)

const (
	entryUser = `{"proto_count":1,"lease_id":1795695862709570046,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"user-service","version":"v1"}}`
	// Fields of other writers, top-level and nested, in the middle.
	entryExtra  = `{"proto_count":1,"registered_by":{"who":"registry-api","n":[1,2]},"lease_id":1795695862712874049,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/Login":true},"network":{"sn":"x","internal":"user-service:8080","external":"","zone":"eu"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"user-service","version":"v2","owner":"team"}}`
	entryOrder  = `{"proto_count":1,"lease_id":1795695862719322195,"run_date":"2026-11-26 12:24:22","methods":{},"network":{"sn":"","internal":"order-service:9090","external":""},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"staging","app_id":"order-service","version":"v1"}}`
	entryBroken = `{"lease_id":`
)

func refreshedSeed() []corev1.ConfigMap {
	return []corev1.ConfigMap{
		*configMap("firefly", "ff-registry-prod", map[string]string{
			"user-service.1795695862709570046": entryUser,
			"user-service.1795695862712874049": entryExtra,
			"broken":                           entryBroken,
		}),
		*configMap("shop", "ff-registry-staging", map[string]string{"order-service.1795695862719322195": entryOrder}),
		*configMap("firefly", "ff-registry-empty", nil),
		// Not registry ConfigMaps, even though their values look like entries.
		*configMap("firefly", "app-config", map[string]string{"user-service.1795695862709570046": entryUser}),
		*configMap("firefly", "ff-registry-", map[string]string{"user-service.1795695862709570046": entryUser}),
		*configMap("firefly", "ff-registry", map[string]string{"user-service.1795695862709570046": entryUser}),
	}
}

// checkRefreshed asserts that after only changes run_date, to a time within
// [from, to] written in zone.
func checkRefreshed(t testing.TB, before, after string, from, to time.Time, zone *time.Location) {
	t.Helper()
	f, err := model.DecodeFields([]byte(after))
	if err != nil {
		t.Fatalf("refreshed entry %s: %v", after, err)
	}
	raw, _ := f.Get("run_date")
	var runDate string
	if err := json.Unmarshal(raw, &runDate); err != nil {
		t.Fatal(err)
	}
	at, err := model.ParseRunDate(runDate, zone)
	if err != nil {
		t.Fatal(err)
	}
	if at.Before(from.Truncate(time.Second)) || at.After(to) {
		t.Errorf("run_date %s (%v) not within [%v, %v]", runDate, at, from, to)
	}
	if want := strings.Replace(before, "2026-11-26 12:24:22", runDate, 1); after != want {
		t.Errorf("refresh changed more than run_date:\n %s\nwant\n %s", after, want)
	}
}

func TestRefreshSeedEntries(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, zone := range []*time.Location{nil, berlin} {
		t.Run(zone.String(), func(t *testing.T) {
			ctx := t.Context()
			seed := refreshedSeed()
			m := newMemory(t, seed...)
			before, _ := m.List(ctx, "")

			from := time.Now()
			if err := refreshSeed(ctx, m, SeedEntriesOf(seed), zone); err != nil {
				t.Fatal(err)
			}
			to := time.Now()

			after, _ := m.List(ctx, "")
			if !reflect.DeepEqual(names(after.Items), names(before.Items)) {
				t.Fatalf("ConfigMaps %q, want %q", names(after.Items), names(before.Items))
			}
			for i, cm := range after.Items {
				old := before.Items[i]
				if _, ok := model.EnvFromConfigMapName(cm.Name); !ok {
					if !reflect.DeepEqual(cm, old) {
						t.Errorf("%s/%s was written: %+v", cm.Namespace, cm.Name, cm)
					}
					continue
				}
				if len(old.Data) == 0 {
					if len(cm.Data) != 0 {
						t.Errorf("%s/%s: data %v appeared", cm.Namespace, cm.Name, cm.Data)
					}
					continue
				}
				if !slicesEqualKeys(cm.Data, old.Data) {
					t.Errorf("%s/%s: keys changed", cm.Namespace, cm.Name)
				}
				for key, value := range cm.Data {
					if key == "broken" {
						if value != entryBroken {
							t.Errorf("corrupt entry rewritten: %s", value)
						}
						continue
					}
					checkRefreshed(t, old.Data[key], value, from, to, zone)
				}
				if cm.ResourceVersion == old.ResourceVersion {
					t.Errorf("%s/%s not updated", cm.Namespace, cm.Name)
				}
			}
		})
	}
}

func slicesEqualKeys(a, b map[string]string) bool {
	return maps.EqualFunc(a, b, func(string, string) bool { return true })
}

// flaky wraps a Store, injecting errors into chosen calls.
type flaky struct {
	Store
	gets, updates atomic.Int32
	onGet         func(n int32, name string) error
	onUpdate      func(n int32, cm *corev1.ConfigMap) error
}

func (f *flaky) Get(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if n := f.gets.Add(1); f.onGet != nil {
		if err := f.onGet(n, name); err != nil {
			return nil, err
		}
	}
	return f.Store.Get(ctx, ns, name)
}

func (f *flaky) Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	if n := f.updates.Add(1); f.onUpdate != nil {
		if err := f.onUpdate(n, cm); err != nil {
			return nil, err
		}
	}
	return f.Store.Update(ctx, cm)
}

var gr = schema.GroupResource{Resource: "configmaps"}

// A conflict (another writer got in between) is retried from a fresh read,
// so the other writer's change survives, and the other writer's entry is
// not the seed's to refresh.
func TestRefreshSeedRetriesConflicts(t *testing.T) {
	ctx := t.Context()
	seed := []corev1.ConfigMap{*configMap("firefly", "ff-registry-prod", map[string]string{"user-service.1795695862709570046": entryUser})}
	m := newMemory(t, seed...)
	s := &flaky{Store: m}
	s.onUpdate = func(n int32, _ *corev1.ConfigMap) error {
		if n == 1 {
			// Another instance registers between our read and write.
			cur := mustGet(t, m, "firefly", "ff-registry-prod")
			cur.Data["user-service.1795695862712874049"] = entryExtra
			if _, err := m.Update(ctx, cur); err != nil {
				t.Fatal(err)
			}
		}
		return nil
	}
	from := time.Now()
	if err := refreshSeed(ctx, s, SeedEntriesOf(seed), nil); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	if s.updates.Load() != 2 || s.gets.Load() != 2 {
		t.Errorf("%d gets, %d updates; want 2 each (one retry)", s.gets.Load(), s.updates.Load())
	}
	cm := mustGet(t, m, "firefly", "ff-registry-prod")
	if len(cm.Data) != 2 {
		t.Fatalf("the concurrent writer's entry was lost: %v", cm.Data)
	}
	checkRefreshed(t, entryUser, cm.Data["user-service.1795695862709570046"], from, to, nil)
	if got := cm.Data["user-service.1795695862712874049"]; got != entryExtra {
		t.Errorf("an entry registered after the seed was refreshed: %s", got)
	}
}

// Only the seed's entries are kept alive: one registered later heartbeats or
// dies on its own, one deregistered stays gone, and a ConfigMap whose seeded
// entries are all gone is not written at all.
func TestRefreshSeedOnlyTheSeed(t *testing.T) {
	ctx := t.Context()
	seed := refreshedSeed()
	m := newMemory(t, seed...)
	entries := SeedEntriesOf(seed)

	cur := mustGet(t, m, "firefly", "ff-registry-prod")
	delete(cur.Data, "user-service.1795695862712874049")
	cur.Data["user-service.1795695862799999999"] = entryExtra
	if _, err := m.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	staging := mustGet(t, m, "shop", "ff-registry-staging")
	delete(staging.Data, "order-service.1795695862719322195")
	staging.Data["order-service.1795695862700000001"] = entryOrder
	staging, err := m.Update(ctx, staging)
	if err != nil {
		t.Fatal(err)
	}

	from := time.Now()
	if err := refreshSeed(ctx, m, entries, nil); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	prod := mustGet(t, m, "firefly", "ff-registry-prod")
	checkRefreshed(t, entryUser, prod.Data["user-service.1795695862709570046"], from, to, nil)
	if _, ok := prod.Data["user-service.1795695862712874049"]; ok {
		t.Error("a deregistered seed entry came back")
	}
	if got := prod.Data["user-service.1795695862799999999"]; got != entryExtra {
		t.Errorf("an entry registered after the seed was refreshed: %s", got)
	}
	if got := mustGet(t, m, "shop", "ff-registry-staging"); got.ResourceVersion != staging.ResourceVersion {
		t.Errorf("ff-registry-staging, with no seed entry left, was written: %v", got.Data)
	}
}

func TestRefreshSeedErrors(t *testing.T) {
	ctx := t.Context()
	entries := SeedEntriesOf(refreshedSeed())
	getErr := apierrors.NewForbidden(gr, "", errors.New("no"))
	s := &flaky{Store: newMemory(t, refreshedSeed()...), onGet: func(int32, string) error { return getErr }}
	if err := refreshSeed(ctx, s, entries, nil); !errors.Is(err, getErr) {
		t.Errorf("get failure: %v", err)
	}

	gone := apierrors.NewNotFound(gr, "ff-registry-prod")
	s = &flaky{Store: newMemory(t, refreshedSeed()...), onUpdate: func(int32, *corev1.ConfigMap) error { return gone }}
	err := refreshSeed(ctx, s, entries, nil)
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), "refresh firefly/ff-registry-prod: ") {
		t.Errorf("update failure: %v", err)
	}
	if s.updates.Load() != 1 {
		t.Errorf("%d updates: a non-conflict error was retried", s.updates.Load())
	}

	conflict := apierrors.NewConflict(gr, "ff-registry-prod", errors.New("modified"))
	s = &flaky{Store: newMemory(t, refreshedSeed()...), onUpdate: func(int32, *corev1.ConfigMap) error { return conflict }}
	if err := refreshSeed(ctx, s, entries, nil); !apierrors.IsConflict(err) {
		t.Errorf("persistent conflict: %v", err)
	}
	if n := s.updates.Load(); n < 2 {
		t.Errorf("%d updates: a conflict was not retried", n)
	}
}

// RefreshSeedEvery refreshes at once, keeps refreshing every interval and
// returns when its context ends; errors are logged unless it is stopping.
func TestRefreshSeedEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	seed := refreshedSeed()
	m := newMemory(t, seed...)
	s := &flaky{Store: m}
	// A round starts with firefly/ff-registry-prod, the first seeded ConfigMap.
	var rounds atomic.Int32
	s.onGet = func(_ int32, name string) error {
		if name != "ff-registry-prod" {
			return nil
		}
		switch n := rounds.Add(1); {
		case n == 2:
			return apierrors.NewServiceUnavailable("etcd is sad")
		case n >= 4:
			// Once canceled, a ready tick may still win the select: later
			// rounds fail the same way until the loop sees ctx.Done.
			cancel()
			return ctx.Err()
		}
		return nil
	}
	var logs bytes.Buffer
	from := time.Now()
	RefreshSeedEvery(ctx, s, SeedEntriesOf(seed), time.Millisecond, nil, zerolog.New(&logs))
	to := time.Now()

	if n := rounds.Load(); n < 4 {
		t.Errorf("%d refresh rounds, want at least 4", n)
	}
	if n := s.updates.Load(); n != 4 { // two seeded ConfigMaps, two good rounds
		t.Errorf("%d updates, want 4", n)
	}
	if got := strings.Count(logs.String(), "seed refresh"); got != 1 || !strings.Contains(logs.String(), "etcd is sad") {
		t.Errorf("logs = %s, want the one failure before cancel", logs.String())
	}
	cm := mustGet(t, m, "firefly", "ff-registry-prod")
	checkRefreshed(t, entryUser, cm.Data["user-service.1795695862709570046"], from, to, nil)
	if other := mustGet(t, m, "firefly", "app-config"); other.Data["user-service.1795695862709570046"] != entryUser {
		t.Errorf("RefreshSeedEvery wrote a non-registry ConfigMap")
	}
}

// RefreshSeed refreshes once, before it returns, so that a seed is fresh
// before the poller or the leader's GC first read it.
func TestRefreshSeed(t *testing.T) {
	m := newMemory(t, refreshedSeed()...)
	entries := SeedEntriesOf(refreshedSeed())
	from := time.Now()
	if err := RefreshSeed(t.Context(), m, entries, nil); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	cm := mustGet(t, m, "firefly", "ff-registry-prod")
	checkRefreshed(t, entryUser, cm.Data["user-service.1795695862709570046"], from, to, nil)

	s := &flaky{Store: m}
	s.onGet = func(int32, string) error { return apierrors.NewServiceUnavailable("etcd is sad") }
	if err := RefreshSeed(t.Context(), s, entries, nil); err == nil || !strings.Contains(err.Error(), "etcd is sad") {
		t.Errorf("RefreshSeed on a failing store = %v", err)
	}
}

// BenchmarkRefreshSeed refreshes a seed the size of the load test's
// (make loadtest): 50 ConfigMaps of 200 library entries.
func BenchmarkRefreshSeed(b *testing.B) {
	var seed []corev1.ConfigMap
	for env := range 50 {
		data := map[string]string{}
		for i := range 200 {
			lease := 1795695862709570046 + int64(env*1000+i)
			data["app-"+strconv.Itoa(i%10)+"."+strconv.FormatInt(lease, 10)] = strings.Replace(entryUser, "1795695862709570046", strconv.FormatInt(lease, 10), 1)
		}
		seed = append(seed, *configMap("firefly", "ff-registry-env-"+strconv.Itoa(env), data))
	}
	m := newMemory(b, seed...)
	entries := SeedEntriesOf(seed)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := RefreshSeed(ctx, m, entries, time.UTC); err != nil {
			b.Fatal(err)
		}
	}
}
