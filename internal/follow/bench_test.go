package follow

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
)

// seed is the load test's registry: 50 envs × 200 instances (10 apps of 20)
// × 20 methods each; extra adds one instance of a new version to env-07.
func seed(hb time.Time, extra bool) *model.Snapshot {
	var nodes []instance
	for e := range 50 {
		for a := range 10 {
			methods := make([]string, 20)
			for m := range methods {
				methods[m] = fmt.Sprintf("/acme.app%d.v1.Service/M%d", a, m)
			}
			for i := range 20 {
				nodes = append(nodes, instance{env: fmt.Sprintf("env-%02d", e), app: fmt.Sprintf("app-%d", a),
					lease: int64(e*10000 + a*100 + i), heartbeat: hb, methods: methods})
			}
		}
	}
	if extra {
		nodes = append(nodes, instance{env: "env-07", app: "app-3", lease: 999999, heartbeat: hb, methods: []string{"/acme.app3.v1.Service/M5"}})
	}
	return snapshot(nodes...)
}

// BenchmarkChange is the work of one change of one env's routes on a hub
// whose every-env topic 1,000 followers follow: judging the topics, the
// change, and its event, once; then what each follower does, which is to
// take the shared event. The env's index is rebuilt outside the timer, as
// the poller does it before publishing.
func BenchmarkChange(b *testing.B) {
	start := time.Now()
	before, after := seed(start, false), seed(start, true)
	encode := func(c *Change) ([]byte, error) { return fmt.Appendf(nil, "%s %d", c.Tag, len(c.Envs)), nil }
	src := newSource(before)
	hub, err := New(Options{Source: src, Now: func() time.Time { return start }, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	followers := make([]*Follower, 1000)
	for i := range followers {
		followers[i] = hub.Subscribe(AllEnvs)
	}
	defer func() {
		for _, f := range followers {
			f.Close()
		}
	}()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		// A fresh index of the changed env, as a poll or a write makes it;
		// the other envs are shared, as the poller shares them.
		next := before
		if i%2 == 0 {
			next = after
		}
		snap := &model.Snapshot{Envs: map[string]*model.EnvIndex{}, EnvNames: next.EnvNames,
			NamespaceSyncedAt: next.NamespaceSyncedAt, Namespaces: next.Namespaces}
		for name, env := range next.Envs {
			snap.Envs[name] = env
		}
		snap.Envs["env-07"] = model.BuildEnv("env-07", entriesOf(next.Envs["env-07"]))
		from := followers[0].Head().Revision
		src.Swap(snap)
		b.StartTimer()
		for _, f := range followers {
			head := f.Head()
			c, err := Since(from, head.Revision)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Event(encode); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func entriesOf(env *model.EnvIndex) []model.Entry {
	out := make([]model.Entry, len(env.Nodes))
	for i, n := range env.Nodes {
		out[i] = model.Entry{Namespace: n.Namespace, Key: n.Key, Node: n}
	}
	return out
}

// BenchmarkRenderEveryEnvJSON is the baseline: encoding/json over every
// env's route table once, which is what each stream did on its own for each
// change before following was shared (and then hashed and diffed it).
func BenchmarkRenderEveryEnvJSON(b *testing.B) {
	start := time.Now()
	snap := seed(start, false)
	tables := make([]*model.RouteTable, len(snap.EnvNames))
	for i, name := range snap.EnvNames {
		tables[i] = snap.Envs[name].Routes(start, time.Hour).Table
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(tables); err != nil {
			b.Fatal(err)
		}
	}
}
