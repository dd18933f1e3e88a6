package watch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
)

// utc8Wall is the run_date a writer in UTC+8 writes at t: its local wall
// clock, which a reader in UTC takes for a time 8 hours ahead.
func utc8Wall(t time.Time) time.Time {
	w := t.In(time.FixedZone("UTC+8", 8*3600))
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), time.UTC)
}

// skewFixture is a poller with a clock the test moves, over a store holding
// ff-registry-prod in firefly.
type skewFixture struct {
	*fixture
	reg *prometheus.Registry
	now time.Time
}

func newSkewFixture(t *testing.T, data map[string]string) *skewFixture {
	t.Helper()
	f := &skewFixture{fixture: &fixture{}, reg: prometheus.NewRegistry(), now: baseTime}
	mem, err := store.NewMemory(*configMap("firefly", "ff-registry-prod", "", data))
	if err != nil {
		t.Fatal(err)
	}
	f.store = &counting{Memory: mem}
	p, err := New(f.store, Options{
		Namespaces: []string{"firefly"},
		TTL:        ttl,
		Parse:      model.ParseOptions{MaxClockSkew: time.Minute},
		Log:        zerolog.Nop(),
		Now:        func() time.Time { return f.now },
		Registerer: f.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.poller = p
	return f
}

const ttl = 10 * time.Second

// write replaces the ConfigMap's data, as a writer's Update does, and
// returns what the store holds now.
func (f *skewFixture) write(t *testing.T, data map[string]string) *corev1.ConfigMap {
	t.Helper()
	return f.update(t, configMap("firefly", "ff-registry-prod", "", data))
}

func (f *skewFixture) node(t *testing.T, app string) *model.Node {
	t.Helper()
	a := f.poller.Snapshot().Envs["prod"].Apps[app]
	if a == nil || len(a.Nodes) != 1 {
		t.Fatalf("app %s: %+v", app, a)
	}
	return a.Nodes[0]
}

func TestPollRunDateInFutureFollowsObservedChanges(t *testing.T) {
	const login = "/acme.user.v1.UserService/Login"
	future := func(at time.Time) string { return entry("prod", "ahead", 1, utc8Wall(at), login) }
	// honest runs 30 s ahead: within the tolerance, taken at its word.
	honest := entry("prod", "honest", 2, baseTime.Add(30*time.Second), login)
	data := map[string]string{"ahead.1": future(baseTime), "honest.2": honest}
	f := newSkewFixture(t, data)
	f.poller.Poll(context.Background())

	n := f.node(t, "ahead")
	if n.RunDateAhead() != 8*time.Hour || !n.Heartbeat().Equal(baseTime) {
		t.Fatalf("ahead: RunDateAhead %v, Heartbeat %v; want 8h, the first poll", n.RunDateAhead(), n.Heartbeat())
	}
	if h := f.node(t, "honest"); !h.Heartbeat().Equal(h.RunDate) || h.RunDateAhead() != 0 {
		t.Errorf("honest: Heartbeat %v, RunDate %v", h.Heartbeat(), h.RunDate)
	}

	// Heartbeats keep changing the value: alive throughout, counted from the
	// poll that saw each one. Polls in between see nothing new.
	for i := 0; i < 6; i++ {
		f.now = f.now.Add(ttl / 2)
		data = map[string]string{"ahead.1": future(f.now), "honest.2": honest}
		f.write(t, data)
		f.poller.Poll(context.Background())
		seen := f.now
		f.now = f.now.Add(2 * time.Second)
		f.poller.Poll(context.Background())
		if n := f.node(t, "ahead"); !n.Heartbeat().Equal(seen) || !n.Alive(f.now, ttl) {
			t.Fatalf("heartbeat %d: Heartbeat %v, want %v; alive %v", i, n.Heartbeat(), seen, n.Alive(f.now, ttl))
		}
		f.now = seen
	}
	lastChange := f.now

	// honest, within the tolerance, died as it does today: TTL after its
	// run_date, although its run_date is ahead of the clock it was read by.
	prod := f.poller.Snapshot().Envs["prod"]
	if got := model.AliveCount(prod.Apps["honest"].Nodes, baseTime.Add(30*time.Second+ttl), ttl); got != 1 {
		t.Error("honest dead before its run_date + TTL")
	}
	if got := model.AliveCount(prod.Apps["honest"].Nodes, baseTime.Add(30*time.Second+ttl+time.Nanosecond), ttl); got != 0 {
		t.Error("honest alive after its run_date + TTL")
	}

	// The heartbeats stop. The ConfigMap still changes (another instance
	// registers), but ahead's value does not: it keeps its last sighting and
	// dies one TTL after it, although its run_date is hours away.
	f.now = lastChange.Add(3 * time.Second)
	data["other.3"] = entry("prod", "other", 3, f.now, login)
	f.write(t, data)
	f.poller.Poll(context.Background())
	for _, tt := range []struct {
		at    time.Duration
		alive bool
	}{
		{ttl, true},
		{ttl + time.Nanosecond, false},
		{time.Hour, false},
		{8 * time.Hour, false},
	} {
		f.now = lastChange.Add(tt.at)
		f.poller.Poll(context.Background())
		n := f.node(t, "ahead")
		if !n.Heartbeat().Equal(lastChange) || n.Alive(f.now, ttl) != tt.alive {
			t.Errorf("last change%+v: Heartbeat %v, want %v; alive %v, want %v", tt.at, n.Heartbeat(), lastChange, n.Alive(f.now, ttl), tt.alive)
		}
		prod := f.poller.Snapshot().Envs["prod"]
		want := 0
		if tt.alive {
			want = 1
		}
		if got := prod.Apps["ahead"].Counts(f.now, ttl).Alive; got != want {
			t.Errorf("last change%+v: %d alive, want %d", tt.at, got, want)
		}
	}

	// A writer's own write (poller.Apply) is seen when it is applied.
	f.now = lastChange.Add(time.Hour)
	data["ahead.1"] = future(f.now)
	f.poller.Apply(f.write(t, data))
	if n := f.node(t, "ahead"); !n.Heartbeat().Equal(f.now) || !n.Alive(f.now.Add(ttl), ttl) {
		t.Errorf("applied: Heartbeat %v, want %v", n.Heartbeat(), f.now)
	}
}

func TestPollReportsRunDateInFuture(t *testing.T) {
	f := newSkewFixture(t, map[string]string{
		"ahead.1":  entry("prod", "ahead", 1, utc8Wall(baseTime), "/acme.user.v1.UserService/Login"),
		"ahead.2":  entry("prod", "ahead", 2, baseTime.Add(time.Minute+time.Second), "/acme.user.v1.UserService/Login"),
		"honest.3": entry("prod", "honest", 3, baseTime.Add(time.Minute), "/acme.user.v1.UserService/Login"),
	})
	f.poller.Poll(context.Background())
	var got []string
	for _, w := range f.poller.Snapshot().Envs["prod"].Warnings {
		if w.Reason == model.WarnRunDateInFuture {
			got = append(got, w.Key+": "+w.Detail)
		}
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], "ahead.1: ") || !strings.Contains(got[0], "8h0m0s ahead") ||
		!strings.HasPrefix(got[1], "ahead.2: ") || !strings.Contains(got[1], "1m1s ahead") {
		t.Errorf("run_date_in_future warnings:\n%s", strings.Join(got, "\n"))
	}
	want := `
# HELP registry_api_entries_run_date_in_future Registry entries whose run_date was more than REGISTRY_MAX_CLOCK_SKEW ahead of this replica's clock when it read them, by env.
# TYPE registry_api_entries_run_date_in_future gauge
registry_api_entries_run_date_in_future{env="prod"} 2
`
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(want), "registry_api_entries_run_date_in_future"); err != nil {
		t.Fatal(err)
	}

	// Fixed (the writer now writes UTC): the warning and the gauge go.
	f.now = f.now.Add(5 * time.Second)
	f.write(t, map[string]string{
		"ahead.1":  entry("prod", "ahead", 1, f.now, "/acme.user.v1.UserService/Login"),
		"ahead.2":  entry("prod", "ahead", 2, f.now, "/acme.user.v1.UserService/Login"),
		"honest.3": entry("prod", "honest", 3, baseTime.Add(time.Minute), "/acme.user.v1.UserService/Login"),
	})
	f.poller.Poll(context.Background())
	if err := testutil.GatherAndCompare(f.reg, strings.NewReader(strings.Replace(want, "} 2", "} 0", 1)), "registry_api_entries_run_date_in_future"); err != nil {
		t.Fatal(err)
	}
}
