package model

import (
	"slices"
	"testing"
	"time"
)

func routesEnv(t0 time.Time) *EnvIndex {
	mk := func(app, version, internal string, lease int64, rd time.Time, methods ...string) Entry {
		return Entry{Namespace: "ns", Key: CanonicalKey(app, lease), Node: &Node{Namespace: "ns", Key: CanonicalKey(app, lease),
			Env: "prod", AppID: app, LeaseID: lease, Version: version, RunDate: rd, Methods: methods, Network: Network{Internal: internal}}}
	}
	return BuildEnv("prod", []Entry{
		mk("a", "v1", "a:80", 1, t0, "/p.S/A", "/p.S/B"),
		mk("a", "v2", "10.0.0.1:80", 2, t0.Add(-3*time.Second), "/p.S/A"),
		mk("b", "v1", "b:80", 3, t0.Add(-5*time.Second), "/p.S/B", "/p.T/C"),
	})
}

func TestRoutesMemoAndExpiry(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ttl := 10 * time.Second
	env := routesEnv(t0)
	m := env.Routes(t0, ttl)
	if m.Alive != 3 || env.Routes(t0.Add(time.Second), ttl) != m {
		t.Fatalf("the same nodes alive rendered anew: alive %d", m.Alive)
	}
	a := m.Table.Lookup("/p.S/A")
	if a == nil || a.AppID != "a" || len(a.Targets) != 2 || a.Targets[0].Internal != "a:80" || a.Targets[1].Internal != "10.0.0.1:80" {
		t.Errorf("route of /p.S/A: %+v", a)
	}
	if b := m.Table.Lookup("/p.S/B"); len(b.Claimants) != 2 || b.AppID != "a" {
		t.Errorf("route of /p.S/B: %+v", b)
	}
	// b's only node dies first, just after its heartbeat plus the TTL.
	next := env.NextExpiry(t0, ttl)
	if want := t0.Add(-5*time.Second + ttl + time.Nanosecond); !next.Equal(want) {
		t.Fatalf("NextExpiry %s, want %s", next, want)
	}
	if env.Routes(next.Add(-time.Nanosecond), ttl) != m {
		t.Error("rendered anew before the death")
	}
	after := env.Routes(next, ttl)
	if after == m || after.Alive != 2 {
		t.Fatalf("after the death: alive %d", after.Alive)
	}
	c := DiffRoutes("prod", m.Table, after.Table)
	var changed []string
	for _, r := range c.Changed {
		changed = append(changed, r.Method)
	}
	if len(c.Added)+len(c.Removed) != 0 || !slices.Equal(changed, []string{"/p.S/B", "/p.T/C"}) {
		t.Errorf("diff after b died: %+v", c)
	}
	if d := DiffRoutes("prod", nil, after.Table); len(d.Added) != 3 {
		t.Errorf("diff from nothing: %+v", d)
	}
	if d := DiffRoutes("prod", after.Table, nil); !slices.Equal(d.Removed, []string{"/p.S/A", "/p.S/B", "/p.T/C"}) {
		t.Errorf("diff to nothing: %+v", d)
	}
	if d := DiffRoutes("prod", after.Table, env.RouteTable(next, ttl, "")); !d.Empty() {
		t.Errorf("equal tables differ: %+v", d)
	}
	if v2 := env.RouteTable(t0, ttl, "v2").Lookup("/p.S/A"); len(v2.Targets) != 1 || v2.Targets[0].Internal != "10.0.0.1:80" {
		t.Errorf("version filter: %+v", v2)
	}
	if got := env.NextExpiry(t0.Add(time.Hour), ttl); !got.IsZero() {
		t.Errorf("NextExpiry with none alive: %s", got)
	}
}

// One version's table lists the methods whose owner has instances of that
// version; one whose instances of it are all dead is listed down, and one
// whose owner has none of it is not listed.
func TestRouteTableOfAVersion(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ttl := 10 * time.Second
	env := routesEnv(t0)
	methods := func(tb *RouteTable) []string {
		var out []string
		for _, r := range tb.Routes {
			out = append(out, r.Method)
		}
		return out
	}
	if got := methods(env.RouteTable(t0, ttl, "v2")); !slices.Equal(got, []string{"/p.S/A"}) {
		t.Errorf("v2 lists %v, want only /p.S/A, the one method with a v2 instance", got)
	}
	if got := methods(env.RouteTable(t0, ttl, "v1")); !slices.Equal(got, []string{"/p.S/A", "/p.S/B", "/p.T/C"}) {
		t.Errorf("v1 lists %v", got)
	}
	if got := methods(env.RouteTable(t0, ttl, "v9")); len(got) != 0 {
		t.Errorf("a version nobody runs lists %v", got)
	}
	// a's v2 instance dies 7 s after t0: v2's /p.S/A is then down, still listed.
	later := env.RouteTable(t0.Add(8*time.Second), ttl, "v2")
	if r := later.Lookup("/p.S/A"); r == nil || len(r.Targets) != 0 {
		t.Errorf("v2's /p.S/A once its instance died: %+v, want listed with no targets", r)
	}
}
