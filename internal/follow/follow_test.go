package follow

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/testkit"
)

// The tests run in synctest bubbles: the hub's clock and timers are the
// bubble's, so a TTL running out takes no real time, and synctest.Wait says
// when every goroutine is blocked.

const ttl = 10 * time.Second

type source = testkit.Source

func newSource(snap *model.Snapshot) *source { return testkit.NewSource(snap) }

// instance is one registered node of env prod.
type instance struct {
	env, app string
	lease    int64
	heartbeat,
	observed time.Time // set for a run_date read ahead of the reader's clock
	methods []string
}

func snapshot(nodes ...instance) *model.Snapshot {
	byEnv := map[string][]model.Entry{}
	for _, n := range nodes {
		env := n.env
		if env == "" {
			env = "prod"
		}
		key := model.CanonicalKey(n.app, n.lease)
		byEnv[env] = append(byEnv[env], model.Entry{Namespace: "firefly", Key: key, Node: &model.Node{
			Namespace: "firefly", Key: key, Env: env, AppID: n.app, LeaseID: n.lease, Version: "v1",
			RunDate: n.heartbeat, ObservedAt: n.observed, Methods: slices.Sorted(slices.Values(n.methods)),
			Network: model.Network{Internal: n.app + ":8080"},
		}})
	}
	snap := &model.Snapshot{Envs: map[string]*model.EnvIndex{}, NamespaceSyncedAt: map[string]time.Time{}, Namespaces: []string{"firefly"}}
	for env, entries := range byEnv {
		snap.Envs[env] = model.BuildEnv(env, entries)
		snap.EnvNames = append(snap.EnvNames, env)
	}
	slices.Sort(snap.EnvNames)
	return snap
}

const (
	getUser     = "/acme.user.v1.UserService/Get"
	createOrder = "/acme.order.v1.OrderService/Create"
)

func fleet(hb time.Time, extra ...instance) *model.Snapshot {
	return snapshot(append([]instance{
		{app: "user-service", lease: 1, heartbeat: hb, methods: []string{getUser}},
		{app: "order-service", lease: 2, heartbeat: hb, methods: []string{createOrder}},
	}, extra...)...)
}

func newHub(t *testing.T, src model.SnapshotSource, max int) (*Hub, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := New(Options{Source: src, TTL: ttl, MaxFollowers: max, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return h, reg
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Many followers at one revision share one Change and one encoding of it:
// the work of a change does not grow with the followers.
func TestFollowersShareOneChangeAndItsEncoding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(fleet(start))
		hub, _ := newHub(t, src, 0)
		const n = 200
		followers := make([]*Follower, n)
		heads := make([]Head, n)
		for i := range followers {
			followers[i] = hub.Subscribe(AllEnvs)
			heads[i] = followers[i].Head()
		}
		defer func() {
			for _, f := range followers {
				f.Close()
			}
		}()

		src.Publish(fleet(start, instance{app: "order-service", lease: 3, heartbeat: start, methods: []string{"/acme.order.v1.OrderService/Cancel"}}))
		synctest.Wait()
		var encodings atomic.Int64
		encode := func(c *Change) ([]byte, error) {
			encodings.Add(1)
			return fmt.Appendf(nil, "change %s %d", c.Tag, len(c.Envs)), nil
		}
		var wg sync.WaitGroup
		events := make([][]byte, n)
		changes := make([]*Change, n)
		for i := range followers {
			wg.Go(func() {
				if !closed(heads[i].Changed) {
					t.Errorf("follower %d was not woken", i)
					return
				}
				next := followers[i].Head()
				c, err := Since(heads[i].Revision, next.Revision)
				if err != nil {
					t.Error(err)
					return
				}
				changes[i] = c
				events[i], _ = c.Event(encode)
			})
		}
		wg.Wait()
		for i := range n {
			if changes[i] != changes[0] || &events[i][0] != &events[0][0] {
				t.Fatalf("follower %d got a change or event of its own", i)
			}
		}
		if got := encodings.Load(); got != 1 {
			t.Errorf("the change was encoded %d times for %d followers, want once", got, n)
		}
		c := changes[0]
		if len(c.Envs) != 1 || len(c.Envs[0].Added) != 1 || c.Envs[0].Added[0].Method != "/acme.order.v1.OrderService/Cancel" {
			t.Errorf("change %+v", c.Envs)
		}
	})
}

// A follower that fell behind gets the difference from its own revision to
// the head, computed once for every follower at that revision; one too far
// behind is told to start over.
func TestLaggingFollowerGetsTheDifferenceFromItsRevision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(fleet(start))
		hub, _ := newHub(t, src, 0)
		f := hub.Subscribe("prod")
		defer f.Close()
		old := f.Head().Revision

		// Three changes: Cancel registered, then Create's app gone, then
		// Cancel gone again.
		cancel := instance{app: "order-service", lease: 3, heartbeat: start, methods: []string{"/acme.order.v1.OrderService/Cancel"}}
		user := instance{app: "user-service", lease: 1, heartbeat: start, methods: []string{getUser}}
		src.Publish(fleet(start, cancel))
		synctest.Wait()
		src.Publish(snapshot(user, cancel))
		synctest.Wait()
		src.Publish(snapshot(user))
		synctest.Wait()
		head := f.Head()
		if head.Seq-old.Seq != 3 {
			t.Fatalf("head %d revisions on, want 3", head.Seq-old.Seq)
		}
		c, err := Since(old, head.Revision)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Envs) != 1 || len(c.Envs[0].Added)+len(c.Envs[0].Changed) != 0 || !slices.Equal(c.Envs[0].Removed, []string{createOrder}) || c.Tag != head.Tag {
			t.Errorf("the difference over three changes: %+v", c)
		}
		again, _ := Since(old, head.Revision)
		if again != c {
			t.Error("the same difference was computed twice")
		}

		for i := range MaxLag {
			src.Publish(fleet(start, instance{app: "order-service", lease: int64(10 + i), heartbeat: start, methods: []string{fmt.Sprintf("/acme.order.v1.OrderService/M%d", i)}}))
			synctest.Wait()
		}
		if _, err := Since(old, f.Head().Revision); !errors.Is(err, ErrBehind) {
			t.Errorf("%d revisions behind: %v, want ErrBehind", f.Head().Seq-old.Seq, err)
		}
		if f.Find(old.Tag) != nil && f.Find(old.Tag).Seq == old.Seq {
			t.Error("a revision older than MaxLag is still remembered")
		}
	})
}

// A published snapshot that changes no route (a heartbeat) wakes nobody.
func TestHeartbeatWakesNobody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(fleet(start))
		hub, reg := newHub(t, src, 0)
		env, all := hub.Subscribe("prod"), hub.Subscribe(AllEnvs)
		defer env.Close()
		defer all.Close()
		envHead, allHead := env.Head(), all.Head()
		time.Sleep(time.Second)
		src.Publish(fleet(start.Add(time.Second)))
		synctest.Wait()
		if closed(envHead.Changed) || closed(allHead.Changed) {
			t.Error("a heartbeat woke the followers")
		}
		if got := wakeups(t, reg, causeData); got != 0 {
			t.Errorf("data wake-ups %v, want 0", got)
		}
		if env.Head().Revision != envHead.Revision {
			t.Error("a heartbeat made a new revision")
		}
	})
}

// A run_date read ahead of the reader's clock counts from when it was read:
// its death wakes followers then, not at run_date + TTL.
func TestFutureDatedEntryDeathWakesAtItsTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		ahead := instance{app: "clock-ahead", lease: 9, heartbeat: start.Add(time.Hour), observed: start, methods: []string{"/acme.clock.v1.Clock/Now"}}
		src := newSource(fleet(start.Add(time.Minute), ahead))
		hub, reg := newHub(t, src, 0)
		f := hub.Subscribe("prod")
		defer f.Close()
		head := f.Head()
		var woken time.Time
		done := make(chan struct{})
		go func() {
			defer close(done)
			<-head.Changed
			woken = time.Now()
		}()
		// Alive while now <= observed + TTL; dead a nanosecond later.
		time.Sleep(ttl)
		synctest.Wait()
		if closed(done) {
			t.Fatal("woken before the death")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if !closed(done) {
			t.Fatal("the death of a future-dated entry woke nobody at its time")
		}
		if want := start.Add(ttl + time.Nanosecond); !woken.Equal(want) {
			t.Errorf("woken at +%s, want +%s", woken.Sub(start), want.Sub(start))
		}
		if got := wakeups(t, reg, causeExpiry); got != 1 {
			t.Errorf("expiry wake-ups %v, want 1", got)
		}
		route := f.Head().Tables[0].Table.Lookup("/acme.clock.v1.Clock/Now")
		if route == nil || len(route.Targets) != 0 {
			t.Errorf("after the death: %+v", route)
		}
	})
}

// A follower that comes back with a tag the topic remembers is found; the
// tags are the ones the routes view answers.
func TestFindRemembersRecentTags(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(fleet(start))
		hub, _ := newHub(t, src, 0)
		f := hub.Subscribe(AllEnvs)
		defer f.Close()
		first := f.Head()
		if want := first.Snap.RoutesDigest(first.At, ttl).Tag(); first.Tag != want {
			t.Errorf("tag %s, want the snapshot's routes digest %s", first.Tag, want)
		}
		src.Publish(fleet(start, instance{env: "qa", app: "user-service", lease: 5, heartbeat: start, methods: []string{getUser}}))
		synctest.Wait()
		if got := f.Find(first.Tag); got != first.Revision {
			t.Errorf("Find(%s) = %v", first.Tag, got)
		}
		if f.Find(`"0000000000000000"`) != nil || f.Find("") != nil {
			t.Error("found a tag the topic never had")
		}
		c, err := Since(first.Revision, f.Head().Revision)
		if err != nil || len(c.Envs) != 1 || c.Envs[0].Env != "qa" {
			t.Errorf("a new env: %+v, %v", c, err)
		}
	})
}

// Followers join up to the cap; a refused follower costs nothing and a
// closed one frees its place.
func TestFollowerCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub, reg := newHub(t, newSource(fleet(time.Now())), 2)
		a, err := hub.Follow("prod", "stream")
		if err != nil {
			t.Fatal(err)
		}
		b, err := hub.Follow(AllEnvs, "blocking")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := hub.Follow("prod", "stream"); !errors.Is(err, ErrTooManyFollowers) {
			t.Fatalf("third follower: %v", err)
		}
		a.Close()
		a.Close() // twice is harmless
		c, err := hub.Follow("prod", "stream")
		if err != nil {
			t.Fatalf("after a close: %v", err)
		}
		b.Close()
		c.Close()
		families, _ := reg.Gather()
		for _, f := range families {
			switch f.GetName() {
			case "registry_api_followers":
				for _, m := range f.GetMetric() {
					if m.GetGauge().GetValue() != 0 {
						t.Errorf("followers gauge %v after every close", m)
					}
				}
			case "registry_api_followers_rejected_total":
				if v := f.GetMetric()[0].GetCounter().GetValue(); v != 1 {
					t.Errorf("rejected %v, want 1", v)
				}
			}
		}
		// Nothing followed: the hub's loop is gone.
		synctest.Wait()
		hub.mu.Lock()
		defer hub.mu.Unlock()
		if hub.stop != nil || len(hub.topics) != 0 {
			t.Error("topics or the loop outlived every follower")
		}
	})
}

// EveryChange moves on with every published snapshot, heartbeats included.
func TestEveryChangeMovesOnEveryPublication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(fleet(start))
		hub, _ := newHub(t, src, 0)
		f := hub.Subscribe(EveryChange)
		defer f.Close()
		head := f.Head()
		src.Publish(fleet(start.Add(time.Second)))
		synctest.Wait()
		if !closed(head.Changed) {
			t.Error("a heartbeat did not move EveryChange on")
		}
	})
}

// wakeups reads the hub's wake-ups of cause from reg.
func wakeups(t *testing.T, reg *prometheus.Registry, cause string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "registry_api_follow_wakeups_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == cause {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no wake-ups counted for %s", cause)
	return 0
}

// A snapshot that only refreshes sync times (the poller's quiet poll) is
// read by followers from then on, and moves no topic, EveryChange included.
func TestSyncTimesAloneMoveNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		snap := fleet(start)
		src := newSource(snap)
		hub, _ := newHub(t, src, 0)
		every, env := hub.Subscribe(EveryChange), hub.Subscribe("prod")
		defer every.Close()
		defer env.Close()
		everyHead, envHead := every.Head(), env.Head()

		time.Sleep(2 * time.Second)
		fresher := &model.Snapshot{Envs: snap.Envs, EnvNames: snap.EnvNames, Namespaces: snap.Namespaces,
			NamespaceSyncedAt: map[string]time.Time{"firefly": time.Now()}}
		src.Swap(fresher) // swapped in without an announcement
		head := env.Head()
		if head.Snap != fresher || !head.Snap.SyncedAt().Equal(time.Now()) {
			t.Error("followers read stale sync times")
		}
		if head.Revision != envHead.Revision || every.Head().Revision != everyHead.Revision || closed(everyHead.Changed) {
			t.Error("fresher sync times moved a topic on")
		}
	})
}
