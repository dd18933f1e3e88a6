//go:build integration

package upkeep

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/watch"
	"github.com/acme/registry-api/internal/write"
)

// TestIntegrationRunDateInFuture runs a library instance whose process is in
// UTC+8 and writes its local time into the zone-less run_date, against a real
// API server, read by a poller and cleaned up by a leader in UTC: the entry is
// reported, alive while it heartbeats, dead one TTL after the heartbeats stop
// and removed GCAfter after that, although its run_date is 8 hours ahead.
// The clock is injected: the API server stores run_date as text and never
// reads it, so time only passes where the test says.
func TestIntegrationRunDateInFuture(t *testing.T) {
	srv, admin := startAPIServer(t)
	ctx := t.Context()
	const (
		ns, env = "skew-itest", "prod"
		key     = "user-service.1795695862709570046"
		ttl     = 10 * time.Second
		gcAfter = time.Minute
	)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	clock := &settableClock{now: time.Date(2026, 11, 26, 13, 55, 43, 0, time.UTC)}
	restCfg, err := srv.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.NewKube(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	poller, err := watch.New(st, watch.Options{Namespaces: []string{ns}, TTL: ttl, Now: clock.Now, Log: zerolog.Nop(), Registerer: reg,
		Parse: model.ParseOptions{Zone: time.UTC, MaxClockSkew: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	w, err := write.New(write.Options{Store: st, TTL: ttl, Now: clock.Now, OnWritten: poller.Apply})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	keeper, err := NewKeeper(Options{ConfigMaps: st, Writer: w, Namespaces: []string{ns}, GCAfter: gcAfter,
		Zone: time.UTC, MaxClockSkew: time.Minute, Now: clock.Now, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}

	// The library instance: its process runs in UTC+8.
	utc8 := time.FixedZone("UTC+8", 8*3600)
	value := func() string {
		b, err := json.Marshal(model.ServiceNode{
			ProtoCount: 1,
			LeaseID:    1795695862709570046,
			RunDate:    clock.Now().In(utc8).Format(time.DateTime),
			Methods:    map[string]bool{"/acme.user.v1.UserService/Login": true},
			Network:    model.Network{SN: "firefly-main-network", Internal: "user-service:8080", External: "127.0.0.1"},
			Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
			Meta:       model.Meta{Env: env, AppID: "user-service", Version: "v1"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first := value()
	if !strings.Contains(first, `"run_date":"2026-11-26 21:55:43"`) {
		t.Fatalf("not the library's zone-less local time: %s", first)
	}
	created, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: model.ConfigMapName(env)},
		Data:       map[string]string{key: first},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rv := created.ResourceVersion
	// heartbeat rewrites the entry as the library does: a plain Update
	// carrying the resourceVersion it read.
	heartbeat := func() {
		t.Helper()
		cm, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, model.ConfigMapName(env), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data[key] = value()
		cm, err = admin.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rv = cm.ResourceVersion
	}
	// cached waits until the API server's watch cache, which the poller's and
	// the keeper's LISTs read, holds the last write.
	cached := func() {
		t.Helper()
		want, _ := strconv.ParseUint(rv, 10, 64)
		deadline := time.Now().Add(10 * time.Second)
		for {
			cms, err := st.List(ctx, ns)
			if err != nil {
				t.Fatal(err)
			}
			for _, cm := range cms.Items {
				if got, _ := strconv.ParseUint(cm.ResourceVersion, 10, 64); cm.Name == model.ConfigMapName(env) && got >= want {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the watch cache did not reach resourceVersion %s", rv)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	node := func() *model.Node {
		t.Helper()
		e := poller.Snapshot().Envs[env]
		if e == nil || e.Apps["user-service"] == nil {
			t.Fatal("the entry is not indexed")
		}
		return e.Apps["user-service"].Nodes[0]
	}
	alive := func() int {
		t.Helper()
		return poller.Snapshot().Envs[env].Counts(clock.Now(), ttl).Alive
	}
	present := func() bool {
		t.Helper()
		cm, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, model.ConfigMapName(env), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, ok := cm.Data[key]
		return ok
	}
	cycle := func() {
		t.Helper()
		if err := keeper.Cycle(ctx); err != nil {
			t.Fatal(err)
		}
	}

	cached()
	poller.Poll(ctx)
	if n := node(); n.RunDateAhead() != 8*time.Hour || !n.Heartbeat().Equal(clock.Now()) {
		t.Fatalf("run_date %s ahead, heartbeat %v; want 8h ahead, counted from the poll", n.RunDateAhead(), n.Heartbeat())
	}
	var reported []model.Issue
	for _, i := range poller.Snapshot().Envs[env].Warnings {
		if i.Reason == model.WarnRunDateInFuture {
			reported = append(reported, i)
		}
	}
	if len(reported) != 1 || reported[0].Key != key || !strings.Contains(reported[0].Detail, "8h0m0s ahead") {
		t.Errorf("run_date_in_future warnings %+v", reported)
	}
	const gauge = `
# HELP registry_api_entries_run_date_in_future Registry entries whose run_date was more than REGISTRY_MAX_CLOCK_SKEW ahead of this replica's clock when it read them, by env.
# TYPE registry_api_entries_run_date_in_future gauge
registry_api_entries_run_date_in_future{env="prod"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(gauge), "registry_api_entries_run_date_in_future"); err != nil {
		t.Error(err)
	}
	cycle()

	// Heartbeats every TTL/2 for twice GCAfter: alive, and never collected.
	for i := 0; i < int(2*gcAfter/(ttl/2)); i++ {
		clock.advance(ttl / 2)
		heartbeat()
		cached()
		poller.Poll(ctx)
		cycle()
		if !node().Heartbeat().Equal(clock.Now()) || alive() != 1 {
			t.Fatalf("heartbeat %d: heartbeat %v, %d alive; want alive from now", i, node().Heartbeat(), alive())
		}
		if !present() {
			t.Fatalf("heartbeat %d: cleanup removed an entry that heartbeats", i)
		}
	}
	lastChange := clock.Now()

	// The instance crashes: its heartbeats stop, its entry stays behind.
	clock.advance(ttl)
	poller.Poll(ctx)
	cycle()
	if alive() != 1 {
		t.Error("dead within one TTL of its last heartbeat")
	}
	clock.advance(time.Second)
	poller.Poll(ctx)
	if alive() != 0 {
		t.Fatalf("alive %s after its last heartbeat, its run_date 8 h ahead", clock.Now().Sub(lastChange))
	}
	clock.advance(gcAfter - ttl - time.Second)
	cycle()
	if !present() {
		t.Fatal("removed by cleanup exactly GCAfter after its last heartbeat")
	}
	clock.advance(time.Second)
	cycle()
	if present() {
		t.Fatalf("not removed by cleanup %s after its last heartbeat, GCAfter %s", clock.Now().Sub(lastChange), gcAfter)
	}
	// The writer applied its own removal to the poller.
	if e := poller.Snapshot().Envs[env]; e == nil || len(e.Apps) != 0 || len(e.Warnings) != 0 {
		t.Errorf("after the removal the env indexes %+v", e)
	}
}
