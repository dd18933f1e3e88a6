package write

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/watch"
)

// libraryUserService is the library's own entry for this instance, from the
// fixture fixtures/configmaps-go-micro.yaml.
const libraryUserService = `{"proto_count":1,"lease_id":1795695862709570046,"run_date":"2026-11-26 12:24:22","methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true},"network":{"sn":"firefly-main-network","internal":"user-service:8080","external":"127.0.0.1"},"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"env":"prod","app_id":"user-service","version":"v1"}}`

func TestRegisterCreatesConfigMapInLibraryFormat(t *testing.T) {
	mem := newMemory(t)
	var written []*corev1.ConfigMap
	w := newWriter(t, Options{
		Store: mem, Now: fixedClock(t0), TTL: 10 * time.Second,
		OnWritten: func(cm *corev1.ConfigMap) { written = append(written, cm) },
	})

	res, err := w.Register(context.Background(), userService(1795695862709570046))
	if err != nil {
		t.Fatal(err)
	}
	cm, err := mem.Get(context.Background(), "firefly", "ff-registry-prod")
	if err != nil {
		t.Fatal(err)
	}
	if len(cm.Labels) != 0 || len(cm.Annotations) != 0 {
		t.Errorf("labels %v, annotations %v: want none, like the library", cm.Labels, cm.Annotations)
	}
	if len(cm.Data) != 1 {
		t.Fatalf("data %v: want one entry", cm.Data)
	}
	const key = "user-service.1795695862709570046"
	if got := cm.Data[key]; got != libraryUserService {
		t.Errorf("entry\n got %s\nwant %s", got, libraryUserService)
	}
	if res.Key != key || res.LeaseID != 1795695862709570046 || res.Namespace != "firefly" ||
		string(res.Raw) != libraryUserService || res.HeartbeatInterval != 5*time.Second {
		t.Errorf("result %+v", res)
	}
	if res.Node == nil || res.Node.AppID != "user-service" || !res.Node.RunDate.Equal(t0) || len(res.Node.Methods) != 2 {
		t.Errorf("result node %+v", res.Node)
	}
	if len(written) != 1 || written[0].ResourceVersion != cm.ResourceVersion || written[0].Data[key] != libraryUserService {
		t.Errorf("OnWritten got %d ConfigMaps, want the one written (rv %s)", len(written), cm.ResourceVersion)
	}
}

func TestRegisterWritesRunDateInZone(t *testing.T) {
	mem := newMemory(t)
	zone := time.FixedZone("UTC+2", 2*60*60)
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0), Zone: zone})
	res, err := w.Register(context.Background(), userService(7))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.Raw), `"run_date":"2026-11-26 14:24:22"`) {
		t.Errorf("entry %s: want run_date in UTC+2", res.Raw)
	}
	if !res.Node.RunDate.Equal(t0) {
		t.Errorf("node run date %s, want %s", res.Node.RunDate, t0)
	}
}

func TestReRegisterKeepsMembersItDoesNotOwn(t *testing.T) {
	const key = "user-service.42"
	old := `{"registered_by":{"sub":"ci"},"proto_count":1,"lease_id":42,"run_date":"2026-11-26 12:00:00",` +
		`"methods":{"/acme.user.v1.UserService/Old":true},"network":{"sn":"a","zone":"eu-1","internal":"x:1","external":""},` +
		`"kernel":{"language":"Golang","version":"v0.0.0"},"meta":{"team":"id","env":"prod","app_id":"user-service","version":"v0"},"weight":3}`
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{key: old, "other.1": "not json"}))
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})

	reg := userService(42)
	reg.Version = "v2"
	reg.Extra = map[string]json.RawMessage{"registered_by": json.RawMessage(`{"sub":"api"}`), "a_new": json.RawMessage(`true`)}
	if _, err := w.Register(context.Background(), reg); err != nil {
		t.Fatal(err)
	}
	want := `{"registered_by":{"sub":"api"},"proto_count":1,"lease_id":42,"run_date":"2026-11-26 12:24:22",` +
		`"methods":{"/acme.user.v1.UserService/GetProfile":true,"/acme.user.v1.UserService/Login":true},` +
		`"network":{"sn":"firefly-main-network","zone":"eu-1","internal":"user-service:8080","external":"127.0.0.1"},` +
		`"kernel":{"language":"Golang","version":"v0.0.1"},"meta":{"team":"id","env":"prod","app_id":"user-service","version":"v2"},"weight":3,"a_new":true}`
	data := getData(t, mem, "firefly", "prod")
	if got := data[key]; got != want {
		t.Errorf("entry\n got %s\nwant %s", got, want)
	}
	if data["other.1"] != "not json" {
		t.Errorf("another writer's entry changed: %q", data["other.1"])
	}
}

func TestRegisterMovesNonCanonicalEntryToItsKey(t *testing.T) {
	legacy := `{"owner":"ops",` + strings.TrimPrefix(libraryEntry(t, "prod", "user-service", 42, t0.Add(-time.Hour)), "{")
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{"legacy-42": legacy}))
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})
	if _, err := w.Register(context.Background(), userService(42)); err != nil {
		t.Fatal(err)
	}
	data := getData(t, mem, "firefly", "prod")
	if _, ok := data["legacy-42"]; ok || len(data) != 1 {
		t.Fatalf("data %v: want only the canonical key", data)
	}
	if got := data["user-service.42"]; !strings.HasPrefix(got, `{"owner":"ops","proto_count":1,"lease_id":42,"run_date":"2026-11-26 12:24:22"`) {
		t.Errorf("entry %s: want the legacy entry's members kept and refreshed", got)
	}
}

func TestRegisterRefusesKeyHoldingAnotherInstance(t *testing.T) {
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{
		"user-service.42": libraryEntry(t, "prod", "user-service", 43, t0),
	}))
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})
	_, err := w.Register(context.Background(), userService(42))
	wantCode(t, err, model.CodeConflict)
}

func TestGeneratedLeasesAreUnique(t *testing.T) {
	// A frozen clock makes every registration start from the same lease id;
	// one instance of the app already holds it under a foreign key.
	start := t0.UnixNano()
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{
		"hand-written": libraryEntry(t, "prod", "user-service", start, t0),
		// The same lease of another app does not collide.
		model.CanonicalKey("order-service", start+1): libraryEntry(t, "prod", "order-service", start+1, t0),
	}))
	for _, window := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(fmt.Sprintf("window=%s", window), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				counting := &countingStore{Store: mem}
				w := newWriter(t, Options{Store: counting, Now: fixedClock(t0), BatchWindow: window})
				const n = 20
				leases := make(chan int64, n)
				var wg sync.WaitGroup
				for range n {
					wg.Go(func() {
						res, err := w.Register(context.Background(), userService(0))
						if err != nil {
							t.Error(err)
							return
						}
						leases <- res.LeaseID
					})
				}
				if window > 0 {
					synctest.Wait()
					if p, gets := pending(w), counting.gets.Load(); p != n || gets != 0 {
						t.Errorf("before the window: %d pending, %d gets; want %d pending and the store untouched", p, gets, n)
					}
				}
				wg.Wait()
				close(leases)
				seen := map[int64]bool{start: true}
				for l := range leases {
					if seen[l] {
						t.Errorf("lease %d handed out twice (or collides with the existing one)", l)
					}
					seen[l] = true
				}
				// One window gathers every registration into one Update.
				if u := counting.updates.Load(); window > 0 && u != 1 {
					t.Errorf("%d updates with a %s window, want 1", u, window)
				}
			})
		})
	}
	data := getData(t, mem, "firefly", "prod")
	if len(data) != 2+40 {
		t.Errorf("%d entries, want 42", len(data))
	}
}

// A lease id freed by a deregistration is not handed to the next instance,
// even when the clock reads the same instant: a late heartbeat of the old
// instance would otherwise keep the new one's entry alive.
func TestFreedLeaseIsNotHandedOutAgain(t *testing.T) {
	mem := newMemory(t)
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})
	first, err := w.Register(context.Background(), userService(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Deregister(context.Background(), "firefly", "prod", "user-service", first.LeaseID); err != nil {
		t.Fatal(err)
	}
	second, err := w.Register(context.Background(), userService(0))
	if err != nil {
		t.Fatal(err)
	}
	if second.LeaseID == first.LeaseID {
		t.Errorf("lease %d handed out again after its deregistration", first.LeaseID)
	}
	// Another app's registration does not reuse it either.
	other := userService(0)
	other.AppID = "order-service"
	third, err := w.Register(context.Background(), other)
	if err != nil {
		t.Fatal(err)
	}
	if third.LeaseID <= second.LeaseID {
		t.Errorf("lease ids %d then %d: a writer's ids only grow", second.LeaseID, third.LeaseID)
	}
}

func TestHeartbeatRewritesOnlyRunDate(t *testing.T) {
	const key = "user-service.42"
	old := `{"x_first":1,"proto_count":1,"lease_id":42,"run_date":"2026-11-26 12:00:00","methods":{"/a.B/C":true},` +
		`"network":{"sn":"","internal":"user-service:8080","external":""},"kernel":{"language":"Golang","version":"v0.0.1"},` +
		`"meta":{"env":"prod","app_id":"user-service","version":"v1"},"x_last":[1,2]}`
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{key: old}))
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})
	res, err := w.Heartbeat(context.Background(), "firefly", "prod", "user-service", 42)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(old, "2026-11-26 12:00:00", "2026-11-26 12:24:22", 1)
	if got := getData(t, mem, "firefly", "prod")[key]; got != want {
		t.Errorf("entry\n got %s\nwant %s", got, want)
	}
	if res.Key != key || string(res.Raw) != want || !res.Node.RunDate.Equal(t0) || res.HeartbeatInterval != model.DefaultTTL/2 {
		t.Errorf("result %+v", res)
	}
}

func TestHeartbeatOfMissingLease(t *testing.T) {
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{
		"user-service.7": libraryEntry(t, "prod", "user-service", 7, t0),
		// Unreadable or skipped by readers: refreshing them keeps nothing alive.
		"user-service.8": `{"lease_id":8,`,
		"user-service.9": libraryEntry(t, "staging", "user-service", 9, t0),
	}))
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})
	for _, lease := range []int64{42, 8, 9} {
		_, err := w.Heartbeat(context.Background(), "firefly", "prod", "user-service", lease)
		wantCode(t, err, model.CodeLeaseNotFound)
		if !strings.Contains(err.Error(), "register again") {
			t.Errorf("message %q does not tell the client to register again", err)
		}
	}
	// An env without a ConfigMap is not created by a heartbeat.
	_, err := w.Heartbeat(context.Background(), "firefly", "qa", "user-service", 42)
	wantCode(t, err, model.CodeLeaseNotFound)
	if _, err := mem.Get(context.Background(), "firefly", "ff-registry-qa"); !apierrors.IsNotFound(err) {
		t.Errorf("heartbeat created the qa ConfigMap: %v", err)
	}
}

func TestDeregisterIsIdempotent(t *testing.T) {
	mem := newMemory(t)
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})
	ctx := context.Background()
	if _, err := w.Register(ctx, userService(42)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Register(ctx, userService(43)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := w.Deregister(ctx, "firefly", "prod", "user-service", 42); err != nil {
			t.Fatal(err)
		}
	}
	data := getData(t, mem, "firefly", "prod")
	if _, ok := data["user-service.42"]; ok || len(data) != 1 {
		t.Errorf("data %v: want only lease 43", data)
	}
	if err := w.Deregister(ctx, "firefly", "qa", "user-service", 42); err != nil {
		t.Errorf("deregister in an env without ConfigMap: %v", err)
	}
	if _, err := mem.Get(ctx, "firefly", "ff-registry-qa"); !apierrors.IsNotFound(err) {
		t.Errorf("deregister created the qa ConfigMap: %v", err)
	}
}

func TestNonCanonicalKeyIsFound(t *testing.T) {
	entry := libraryEntry(t, "prod", "user-service", 42, t0.Add(-time.Hour))
	other := libraryEntry(t, "prod", "user-service", 43, t0.Add(-time.Hour))
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{
		"written-by-hand": entry,
		"user-service.43": other,
		"garbage":         "{",
	}))
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0)})
	ctx := context.Background()

	res, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 42)
	if err != nil {
		t.Fatal(err)
	}
	data := getData(t, mem, "firefly", "prod")
	want := strings.Replace(entry, "2026-11-26 11:24:22", "2026-11-26 12:24:22", 1)
	if res.Key != "written-by-hand" || data["written-by-hand"] != want {
		t.Errorf("heartbeat: key %s, entry %s; want %s", res.Key, data["written-by-hand"], want)
	}
	if err := w.Deregister(ctx, "firefly", "prod", "user-service", 42); err != nil {
		t.Fatal(err)
	}
	data = getData(t, mem, "firefly", "prod")
	if _, ok := data["written-by-hand"]; ok {
		t.Errorf("deregister left the non-canonical entry")
	}
	if data["user-service.43"] != other || data["garbage"] != "{" || len(data) != 2 {
		t.Errorf("other entries changed: %v", data)
	}
}

func TestSizeGuard(t *testing.T) {
	// Another writer's data fills the ConfigMap up to just under the limit.
	const limit = DefaultMaxConfigMapBytes
	entry := libraryEntry(t, "prod", "user-service", 1, t0)
	room := limit - len("user-service.1") - len(entry) - len("padding")
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{
		"user-service.1": entry,
		"padding":        strings.Repeat("x", room-100),
	}))
	reg := prometheus.NewRegistry()
	w := newWriter(t, Options{Store: mem, Now: newTickingClock(t0, time.Second).Now, Registerer: reg})
	ctx := context.Background()

	_, err := w.Register(ctx, userService(2))
	wantCode(t, err, model.CodeRegistryFull)
	for _, s := range []string{"prod", "firefly", "ff-registry-prod", fmt.Sprint(limit)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q does not name %s", err, s)
		}
	}
	if _, ok := getData(t, mem, "firefly", "prod")["user-service.2"]; ok {
		t.Error("refused registration was written")
	}
	// Heartbeats and re-registrations of the same size still pass.
	if _, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 1); err != nil {
		t.Errorf("heartbeat on a full ConfigMap: %v", err)
	}
	r1 := userService(1)
	r1.Methods = []string{"/acme.lib.v1.LibService/Do"}
	r1.Network = model.Network{SN: "firefly-main-network", Internal: "user-service:8080"}
	if _, err := w.Register(ctx, r1); err != nil {
		t.Errorf("re-registration that does not grow the ConfigMap: %v", err)
	}
	if err := w.Deregister(ctx, "firefly", "prod", "user-service", 1); err != nil {
		t.Errorf("deregister on a full ConfigMap: %v", err)
	}
	// Room again.
	if _, err := w.Register(ctx, userService(2)); err != nil {
		t.Errorf("register after room was made: %v", err)
	}
	if got := testutil.ToFloat64(w.m.ops.WithLabelValues("register", "registry_full")); got != 1 {
		t.Errorf("register/registry_full ops = %v, want 1", got)
	}
}

func TestSizeGuardRefusesOnlyTheOpThatGrowsTooMuch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// In one batch, a heartbeat and a small registration pass while a large
		// one is refused.
		entry := libraryEntry(t, "prod", "user-service", 1, t0.Add(-time.Hour))
		mem := newMemory(t, configMap("firefly", "prod", map[string]string{"user-service.1": entry}))
		const limit = 4096
		w := newWriter(t, Options{Store: mem, Now: newTickingClock(t0, time.Second).Now, MaxConfigMapBytes: limit, BatchWindow: time.Hour})
		big := userService(3)
		big.Extra = map[string]json.RawMessage{"blob": json.RawMessage(`"` + strings.Repeat("b", limit) + `"`)}

		ctx := context.Background()
		type outcome struct {
			name string
			err  error
		}
		outcomes := make(chan outcome, 3)
		go func() {
			_, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 1)
			outcomes <- outcome{"heartbeat", err}
		}()
		go func() { _, err := w.Register(ctx, userService(2)); outcomes <- outcome{"small", err} }()
		go func() { _, err := w.Register(ctx, big); outcomes <- outcome{"big", err} }()
		synctest.Wait()
		if n := pending(w); n != 3 {
			t.Fatalf("%d pending ops, want 3", n)
		}
		if data := getData(t, mem, "firefly", "prod"); len(data) != 1 || data["user-service.1"] != entry {
			t.Fatalf("data %v: written before the window ended", data)
		}
		w.Close()
		for range 3 {
			o := <-outcomes
			switch o.name {
			case "big":
				wantCode(t, o.err, model.CodeRegistryFull)
			default:
				if o.err != nil {
					t.Errorf("%s: %v", o.name, o.err)
				}
			}
		}
		data := getData(t, mem, "firefly", "prod")
		if len(data) != 2 || data["user-service.1"] == entry {
			t.Errorf("data %v: want the heartbeat and the small registration only", data)
		}
	})
}

// pending counts the operations waiting in w's batchers.
func pending(w *Writer) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, b := range w.batchers {
		n += len(b.pending)
	}
	return n
}

func TestValidation(t *testing.T) {
	mem := newMemory(t)
	w := newWriter(t, Options{Store: mem})
	ctx := context.Background()
	for name, mutate := range map[string]func(*Registration){
		"bad app id":       func(r *Registration) { r.AppID = "User_Service" },
		"bad env":          func(r *Registration) { r.Env = "" },
		"bad namespace":    func(r *Registration) { r.Namespace = "Fire/fly" },
		"negative lease":   func(r *Registration) { r.LeaseID = -1 },
		"owned extra":      func(r *Registration) { r.Extra = map[string]json.RawMessage{"lease_id": json.RawMessage("1")} },
		"invalid extra":    func(r *Registration) { r.Extra = map[string]json.RawMessage{"x": json.RawMessage("{")} },
		"malformed method": func(r *Registration) { r.Methods = []string{"Login"} },
	} {
		t.Run(name, func(t *testing.T) {
			r := userService(1)
			mutate(&r)
			_, err := w.Register(ctx, r)
			want := model.CodeInvalid
			if name == "malformed method" {
				want = model.CodeMalformedMethod
			}
			wantCode(t, err, want)
		})
	}
	_, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 0)
	wantCode(t, err, model.CodeInvalid)
	wantCode(t, w.Deregister(ctx, "firefly", "prod", "", 1), model.CodeInvalid)
	if _, err := mem.Get(ctx, "firefly", "ff-registry-prod"); !apierrors.IsNotFound(err) {
		t.Errorf("an invalid request reached the store: %v", err)
	}
}

func TestReadYourWritesThroughPoller(t *testing.T) {
	mem := newMemory(t)
	p, err := watch.New(mem, watch.Options{Namespaces: []string{"firefly"}, Now: fixedClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0), OnWritten: p.Apply})
	if _, err := w.Register(context.Background(), userService(42)); err != nil {
		t.Fatal(err)
	}
	env := p.Snapshot().Envs["prod"]
	if env == nil || env.Apps["user-service"] == nil || env.Apps["user-service"].Nodes[0].LeaseID != 42 {
		t.Fatalf("snapshot right after the write does not hold the registration: %+v", env)
	}
	if err := w.Deregister(context.Background(), "firefly", "prod", "user-service", 42); err != nil {
		t.Fatal(err)
	}
	if env := p.Snapshot().Envs["prod"]; env == nil || len(env.Apps) != 0 {
		t.Fatalf("snapshot right after deregistration: %+v", env)
	}
}

func TestUnchangedEntryIsNotWritten(t *testing.T) {
	// A heartbeat within the same second as the last changes nothing.
	mem := &countingStore{Store: newMemory(t)}
	calls := 0
	w := newWriter(t, Options{Store: mem, Now: fixedClock(t0), OnWritten: func(*corev1.ConfigMap) { calls++ }})
	ctx := context.Background()
	if _, err := w.Register(ctx, userService(42)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Heartbeat(ctx, "firefly", "prod", "user-service", 42); err != nil {
		t.Fatal(err)
	}
	if mem.creates.Load() != 1 || mem.updates.Load() != 0 || calls != 1 {
		t.Errorf("creates %d, updates %d, OnWritten %d: want 1, 0, 1", mem.creates.Load(), mem.updates.Load(), calls)
	}
}

// conflictingStore answers every Update with 409, as if another writer
// always got there first.
type conflictingStore struct{ store.Store }

func (s conflictingStore) Update(context.Context, *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	return nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "ff-registry-prod", errors.New("the object has been modified"))
}

func TestConflictAfterRetries(t *testing.T) {
	mem := newMemory(t, configMap("firefly", "prod", map[string]string{"user-service.1": libraryEntry(t, "prod", "user-service", 1, t0.Add(-time.Hour))}))
	reg := prometheus.NewRegistry()
	w := newWriter(t, Options{
		Store: conflictingStore{mem}, Now: newTickingClock(t0, time.Second).Now, Registerer: reg,
		Backoff: wait.Backoff{Steps: 3, Duration: time.Millisecond, Factor: 1, Jitter: 1},
	})
	_, err := w.Heartbeat(context.Background(), "firefly", "prod", "user-service", 1)
	wantCode(t, err, model.CodeConflict)
	if !apierrors.IsConflict(err) {
		t.Errorf("the API server's error is not kept inside: %v", err)
	}
	if got := testutil.ToFloat64(w.m.conflicts); got != 3 {
		t.Errorf("conflicts = %v, want 3", got)
	}
	if got := testutil.ToFloat64(w.m.storeWrites.WithLabelValues("update", "conflict")); got != 3 {
		t.Errorf("store writes update/conflict = %v, want 3", got)
	}
	if got := testutil.ToFloat64(w.m.ops.WithLabelValues("heartbeat", "conflict")); got != 1 {
		t.Errorf("ops heartbeat/conflict = %v, want 1", got)
	}
}

func TestCanceledCallerAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newMemory(t)
		w := newWriter(t, Options{Store: mem, Now: fixedClock(t0), BatchWindow: time.Hour})
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		canceled := make(chan error, 1)
		go func() {
			_, err := w.Register(ctx, userService(1))
			canceled <- err
		}()
		kept := make(chan error, 1)
		go func() {
			_, err := w.Register(context.Background(), userService(2))
			kept <- err
		}()
		synctest.Wait()
		if n := pending(w); n != 2 {
			t.Fatalf("%d pending registrations, want 2", n)
		}
		cancel()
		if err := <-canceled; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled caller got %v", err)
		}
		synctest.Wait()
		if _, err := mem.Get(context.Background(), "firefly", "ff-registry-prod"); !apierrors.IsNotFound(err) {
			t.Fatalf("written before the window ended or Close: %v", err)
		}
		// Close writes the pending batch at once, instead of after the window.
		w.Close()
		if err := <-kept; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Close wrote the batch after %s, want at once", d)
		}
		data := getData(t, mem, "firefly", "prod")
		if _, ok := data["user-service.2"]; !ok {
			t.Error("pending registration lost on Close")
		}
		if _, ok := data["user-service.1"]; ok {
			t.Error("registration of a caller that had gone before the write was written")
		}
		_, err := w.Register(context.Background(), userService(3))
		wantCode(t, err, model.CodeStoreUnavailable)
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.batchers) != 0 {
			t.Errorf("%d batchers left after Close", len(w.batchers))
		}
	})
}

func TestIdleBatchersGoAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = time.Millisecond
		mem := newMemory(t)
		w := newWriter(t, Options{Store: mem, Now: newTickingClock(t0, time.Second).Now, BatchWindow: window})
		for _, env := range []string{"a", "b", "c"} {
			r := userService(1)
			r.Env = env
			start := time.Now()
			if _, err := w.Register(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d != window {
				t.Errorf("registration in env %s answered after %s, want the window (%s)", env, d, window)
			}
		}
		synctest.Wait()
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.batchers) != 0 {
			t.Errorf("%d batchers left once their writes were done", len(w.batchers))
		}
	})
}

func TestNewValidatesOptions(t *testing.T) {
	mem := newMemory(t)
	for name, o := range map[string]Options{
		"no store":        {},
		"negative window": {Store: mem, BatchWindow: -1},
		"over 1 MiB":      {Store: mem, MaxConfigMapBytes: store.MaxConfigMapBytes + 1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Two writers may share one registry.
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := New(Options{Store: mem, Registerer: reg}); err != nil {
			t.Fatal(err)
		}
	}
}
