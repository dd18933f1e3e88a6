package model_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/model"
)

const ttl = 10 * time.Second

// t0 is the reference heartbeat of index tests.
var t0 = fixtureRunDate

const (
	mLogin   = "/acme.user.v1.UserService/Login"
	mProfile = "/acme.user.v1.UserService/GetProfile"
	mUpdate  = "/acme.user.v1.UserService/UpdateProfile"
	mCreate  = "/acme.order.v1.OrderService/Create"
	mGet     = "/acme.order.v1.OrderService/Get"
	mCheck   = "/acme.auth.v1.AuthService/Check"
)

// node describes an entry to write for BuildEnv tests.
type node struct {
	ns, key  string // key "" means the canonical key
	app      string
	lease    int64
	version  string
	runDate  time.Time
	methods  []string
	envOfCM  string // "" means "prod"
	rawValue string // when set, written verbatim instead
}

// entry encodes n as the library would and parses it like the poller does.
func entry(t testing.TB, n node) model.Entry {
	t.Helper()
	env := cmpOr(n.envOfCM, "prod")
	key := n.key
	if key == "" {
		key = model.CanonicalKey(n.app, n.lease)
	}
	raw := []byte(n.rawValue)
	if n.rawValue == "" {
		sn := model.ServiceNode{
			ProtoCount: 1,
			LeaseID:    n.lease,
			RunDate:    model.FormatRunDate(n.runDate, nil),
			Methods:    map[string]bool{},
			Network:    model.Network{SN: "net", Internal: n.app + ":8080"},
			Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
			Meta:       model.Meta{Env: "prod", AppID: n.app, Version: cmpOr(n.version, "v1")},
		}
		for _, m := range n.methods {
			sn.Methods[m] = true
		}
		var err error
		if raw, err = json.Marshal(sn); err != nil {
			t.Fatal(err)
		}
	}
	e := model.Entry{Namespace: n.ns, Key: key}
	node, warnings, err := model.ParseEntry(n.ns, env, key, raw, model.ParseOptions{})
	if err != nil {
		if !errors.As(err, &e.Err) {
			t.Fatalf("ParseEntry error %T %v", err, err)
		}
		return e
	}
	e.Node, e.Warnings = node, warnings
	return e
}

func entries(t testing.TB, ns ...node) []model.Entry {
	t.Helper()
	out := make([]model.Entry, len(ns))
	for i, n := range ns {
		out[i] = entry(t, n)
	}
	return out
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ids names nodes as ns/key for comparisons.
func ids(nodes []*model.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Namespace + "/" + n.Key
	}
	return out
}

func canonical(ns, app string, lease int64) string {
	return ns + "/" + model.CanonicalKey(app, lease)
}

func TestBuildEnv(t *testing.T) {
	in := entries(t,
		node{ns: "firefly", app: "user-service", lease: 1, version: "v1", runDate: t0, methods: []string{mLogin, mProfile}},
		node{ns: "firefly", app: "user-service", lease: 2, version: "v2", runDate: t0.Add(2 * time.Second), methods: []string{mLogin, mProfile, mUpdate}},
		node{ns: "firefly", key: "user-service/7", app: "user-service", lease: 7, version: "v1", runDate: t0.Add(-5 * time.Second), methods: []string{mLogin}},
		node{ns: "firefly", app: "order-service", lease: 3, runDate: t0.Add(time.Second), methods: []string{mCreate, mGet}},
		node{ns: "shop", app: "order-service", lease: 8, version: "v2", runDate: t0.Add(3 * time.Second), methods: []string{mCreate, mGet}},
		node{ns: "firefly", app: "auth-service", lease: 4, runDate: t0, methods: []string{mCheck, mLogin}},
		node{ns: "firefly", key: "broken", rawValue: `{"lease_id":`},
		node{ns: "firefly", key: "x.5", rawValue: `{"lease_id":5,"run_date":"2026-11-26 12:24:22","meta":{"env":"staging","app_id":"x"}}`},
		node{ns: "shop", key: "a.0", rawValue: `{"lease_id":0,"run_date":"2026-11-26 12:24:22","meta":{"env":"prod","app_id":"a"}}`},
		node{ns: "firefly", key: "bad-methods.9", app: "bad-methods", lease: 9, runDate: t0, methods: []string{"nope"}},
	)
	idx := model.BuildEnv("prod", in)

	if idx.Name != "prod" {
		t.Errorf("Name = %q", idx.Name)
	}
	if want := []string{"firefly", "shop"}; !reflect.DeepEqual(idx.Namespaces, want) {
		t.Errorf("Namespaces = %q, want %q", idx.Namespaces, want)
	}
	if want := []string{"auth-service", "bad-methods", "order-service", "user-service"}; !reflect.DeepEqual(idx.AppIDs, want) {
		t.Errorf("AppIDs = %q, want %q", idx.AppIDs, want)
	}
	if len(idx.Apps) != len(idx.AppIDs) {
		t.Errorf("%d apps for %d app ids", len(idx.Apps), len(idx.AppIDs))
	}

	apps := []struct {
		id       string
		nodes    []string
		versions []string
		methods  []string
	}{
		{"user-service",
			[]string{canonical("firefly", "user-service", 2), canonical("firefly", "user-service", 1), "firefly/user-service/7"},
			[]string{"v1", "v2"}, []string{mProfile, mLogin, mUpdate}},
		{"order-service",
			[]string{canonical("shop", "order-service", 8), canonical("firefly", "order-service", 3)},
			[]string{"v1", "v2"}, []string{mCreate, mGet}},
		{"auth-service", []string{canonical("firefly", "auth-service", 4)}, []string{"v1"}, []string{mCheck, mLogin}},
		{"bad-methods", []string{"firefly/bad-methods.9"}, []string{"v1"}, []string{}},
	}
	for _, want := range apps {
		app := idx.Apps[want.id]
		if app == nil {
			t.Errorf("app %s missing", want.id)
			continue
		}
		if app.ID != want.id {
			t.Errorf("app %s: ID %q", want.id, app.ID)
		}
		if got := ids(app.Nodes); !reflect.DeepEqual(got, want.nodes) {
			t.Errorf("app %s: nodes %q, want %q", want.id, got, want.nodes)
		}
		if !reflect.DeepEqual(app.Versions, want.versions) {
			t.Errorf("app %s: versions %q, want %q", want.id, app.Versions, want.versions)
		}
		if !reflect.DeepEqual(app.Methods, want.methods) {
			t.Errorf("app %s: methods %q, want %q", want.id, app.Methods, want.methods)
		}
	}

	wantMethods := []string{mCheck, mCreate, mGet, mProfile, mLogin, mUpdate}
	if !reflect.DeepEqual(idx.MethodNames, wantMethods) {
		t.Errorf("MethodNames = %q, want %q", idx.MethodNames, wantMethods)
	}
	if len(idx.Methods) != len(wantMethods) {
		t.Errorf("%d methods, want %d", len(idx.Methods), len(wantMethods))
	}
	if want := []string{mLogin}; !reflect.DeepEqual(idx.Conflicts, want) {
		t.Errorf("Conflicts = %q, want %q", idx.Conflicts, want)
	}

	claims := map[string][][2]any{
		mLogin: {
			{"auth-service", []string{canonical("firefly", "auth-service", 4)}},
			{"user-service", []string{canonical("firefly", "user-service", 2), canonical("firefly", "user-service", 1), "firefly/user-service/7"}},
		},
		mProfile: {{"user-service", []string{canonical("firefly", "user-service", 2), canonical("firefly", "user-service", 1)}}},
		mUpdate:  {{"user-service", []string{canonical("firefly", "user-service", 2)}}},
		mCreate:  {{"order-service", []string{canonical("shop", "order-service", 8), canonical("firefly", "order-service", 3)}}},
		mCheck:   {{"auth-service", []string{canonical("firefly", "auth-service", 4)}}},
	}
	for name, want := range claims {
		m := idx.Methods[name]
		if m == nil || m.Name != name {
			t.Errorf("method %s: %+v", name, m)
			continue
		}
		var got [][2]any
		for _, c := range m.Claims {
			got = append(got, [2]any{c.AppID, ids(c.Nodes)})
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("method %s: claims %v, want %v", name, got, want)
		}
	}

	wantInvalid := []model.Issue{
		{Namespace: "firefly", Key: "broken", Reason: model.ReasonInvalidJSON},
		{Namespace: "firefly", Key: "x.5", Reason: model.ReasonEnvMismatch},
		{Namespace: "shop", Key: "a.0", Reason: model.ReasonMissingLeaseID},
	}
	if got := withoutDetail(t, idx.Invalid); !reflect.DeepEqual(got, wantInvalid) {
		t.Errorf("Invalid = %+v, want %+v", got, wantInvalid)
	}
	wantWarnings := []model.Issue{
		{Namespace: "firefly", Key: "bad-methods.9", Reason: model.WarnInvalidMethod},
		{Namespace: "firefly", Key: "user-service/7", Reason: model.WarnNonCanonicalKey},
	}
	if !reflect.DeepEqual(idx.Warnings, wantWarnings) {
		t.Errorf("Warnings = %+v, want %+v", idx.Warnings, wantWarnings)
	}

	// Liveness at t0+6s with a 10 s TTL: only user-service/7 (t0-5s) is stale.
	if got, want := idx.Counts(t0.Add(6*time.Second), ttl), (model.Counts{Alive: 6, Stale: 1}); got != want {
		t.Errorf("Counts = %+v, want %+v", got, want)
	}
}

// withoutDetail checks that every issue explains itself and drops the detail.
func withoutDetail(t testing.TB, issues []model.Issue) []model.Issue {
	t.Helper()
	out := make([]model.Issue, len(issues))
	for i, is := range issues {
		if is.Detail == "" {
			t.Errorf("issue %+v has no detail", is)
		}
		is.Detail = ""
		out[i] = is
	}
	return out
}

func TestBuildEnvEmpty(t *testing.T) {
	idx := model.BuildEnv("prod", nil)
	if idx.Name != "prod" || idx.Apps == nil || idx.Methods == nil ||
		len(idx.Apps)+len(idx.AppIDs)+len(idx.Methods)+len(idx.MethodNames)+len(idx.Conflicts)+len(idx.Invalid)+len(idx.Warnings)+len(idx.Namespaces) != 0 {
		t.Errorf("BuildEnv(nil) = %+v", idx)
	}
	if c := idx.Counts(t0, ttl); c != (model.Counts{}) {
		t.Errorf("Counts = %+v", c)
	}
	// A namespace holding only invalid entries is still one of the env's.
	idx = model.BuildEnv("prod", entries(t, node{ns: "x", key: "k", rawValue: "{"}))
	if !reflect.DeepEqual(idx.Namespaces, []string{"x"}) || len(idx.Invalid) != 1 || len(idx.AppIDs) != 0 {
		t.Errorf("BuildEnv(invalid only) = %+v", idx)
	}
}

func TestBuildEnvDoesNotModifyInput(t *testing.T) {
	in := entries(t,
		node{ns: "b", app: "a", lease: 1, runDate: t0, methods: []string{mLogin}},
		node{ns: "a", app: "a", lease: 1, runDate: t0.Add(time.Second), methods: []string{mLogin}},
		node{ns: "a", key: "z", rawValue: "x"},
	)
	before := slices.Clone(in)
	model.BuildEnv("prod", in)
	if !reflect.DeepEqual(in, before) {
		t.Errorf("BuildEnv reordered or changed its input")
	}
}

// Equal heartbeats are ordered by app id, then lease id, whatever the input.
func TestBuildEnvTieBreak(t *testing.T) {
	in := entries(t,
		node{ns: "n", app: "b-app", lease: 1, runDate: t0, methods: []string{mLogin}},
		node{ns: "n", app: "a-app", lease: 30, runDate: t0, methods: []string{mLogin}},
		node{ns: "n", app: "a-app", lease: 10, runDate: t0, methods: []string{mLogin}},
		node{ns: "m", app: "a-app", lease: 20, runDate: t0, methods: []string{mLogin}},
		node{ns: "n", app: "a-app", lease: -5, runDate: t0, methods: []string{mLogin}},
		node{ns: "n", app: "a-app", lease: 40, runDate: t0.Add(time.Second), methods: []string{mLogin}},
		node{ns: "n", app: "a-app", lease: 2, runDate: t0.Add(-time.Second), methods: []string{mLogin}},
	)
	want := []string{
		canonical("n", "a-app", 40),
		canonical("n", "a-app", -5), canonical("n", "a-app", 10), canonical("m", "a-app", 20), canonical("n", "a-app", 30),
		canonical("n", "a-app", 2),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		idx := model.BuildEnv("prod", in)
		if got := ids(idx.Apps["a-app"].Nodes); !reflect.DeepEqual(got, want) {
			t.Fatalf("a-app nodes %q, want %q", got, want)
		}
		if got := ids(idx.Methods[mLogin].Claims[0].Nodes); !reflect.DeepEqual(got, want) {
			t.Fatalf("claim nodes %q, want %q", got, want)
		}
	}
}

func TestBuildEnvDuplicates(t *testing.T) {
	const app = "user-service"
	key := model.CanonicalKey(app, 1)
	tests := []struct {
		name     string
		in       []node
		kept     string
		runDate  time.Time
		warnings []model.Issue // Detail checked for mentioning the kept entry
	}{
		{
			name: "two keys, library key fresher",
			in: []node{
				{ns: "ff", app: app, lease: 1, runDate: t0},
				{ns: "ff", key: "user-service/1", app: app, lease: 1, runDate: t0.Add(time.Second)},
			},
			kept: "ff/user-service/1", runDate: t0.Add(time.Second),
			warnings: []model.Issue{
				{Namespace: "ff", Key: "user-service/1", Reason: model.WarnNonCanonicalKey},
				{Namespace: "ff", Key: key, Reason: model.WarnDuplicate},
			},
		},
		{
			name: "two keys, canonical key fresher",
			in: []node{
				{ns: "ff", app: app, lease: 1, runDate: t0.Add(time.Second)},
				{ns: "ff", key: "user-service/1", app: app, lease: 1, runDate: t0},
			},
			kept: "ff/" + key, runDate: t0.Add(time.Second),
			warnings: []model.Issue{
				{Namespace: "ff", Key: "user-service/1", Reason: model.WarnNonCanonicalKey},
				{Namespace: "ff", Key: "user-service/1", Reason: model.WarnDuplicate},
			},
		},
		{
			name: "two namespaces, first fresher",
			in: []node{
				{ns: "a", app: app, lease: 1, runDate: t0.Add(time.Second)},
				{ns: "b", app: app, lease: 1, runDate: t0},
			},
			kept: "a/" + key, runDate: t0.Add(time.Second),
			warnings: []model.Issue{{Namespace: "b", Key: key, Reason: model.WarnDuplicate}},
		},
		{
			name: "two namespaces, second fresher",
			in: []node{
				{ns: "a", app: app, lease: 1, runDate: t0},
				{ns: "b", app: app, lease: 1, runDate: t0.Add(time.Second)},
			},
			kept: "b/" + key, runDate: t0.Add(time.Second),
			warnings: []model.Issue{{Namespace: "a", Key: key, Reason: model.WarnDuplicate}},
		},
		{
			name: "equal heartbeats keep the first by namespace and key",
			in: []node{
				{ns: "b", app: app, lease: 1, runDate: t0},
				{ns: "a", app: app, lease: 1, runDate: t0},
			},
			kept: "a/" + key, runDate: t0,
			warnings: []model.Issue{{Namespace: "b", Key: key, Reason: model.WarnDuplicate}},
		},
		{
			name: "three copies",
			in: []node{
				{ns: "a", app: app, lease: 1, runDate: t0},
				{ns: "b", app: app, lease: 1, runDate: t0.Add(2 * time.Second)},
				{ns: "c", app: app, lease: 1, runDate: t0.Add(time.Second)},
			},
			kept: "b/" + key, runDate: t0.Add(2 * time.Second),
			warnings: []model.Issue{
				{Namespace: "a", Key: key, Reason: model.WarnDuplicate},
				{Namespace: "c", Key: key, Reason: model.WarnDuplicate},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := entries(t, tt.in...)
			// Another instance of the same app and the same lease of another
			// app are not duplicates.
			in = append(in, entry(t, node{ns: "a", app: app, lease: 2, runDate: t0}), entry(t, node{ns: "a", app: "other", lease: 1, runDate: t0}))
			want := []string{tt.kept, canonical("a", app, 2)}
			if tt.runDate.Equal(t0) && tt.kept > canonical("a", app, 2) {
				want[0], want[1] = want[1], want[0]
			}
			r := rand.New(rand.NewPCG(3, 4))
			for range 10 {
				r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				idx := model.BuildEnv("prod", in)
				if got := ids(idx.Apps[app].Nodes); !reflect.DeepEqual(got, want) {
					t.Fatalf("nodes %q, want %q", got, want)
				}
				if n := idx.Apps[app].Nodes[slices.Index(want, tt.kept)]; !n.RunDate.Equal(tt.runDate) {
					t.Errorf("kept node's RunDate = %v, want %v", n.RunDate, tt.runDate)
				}
				if c := idx.Counts(t0, time.Hour); c.Alive != 3 || c.Stale != 0 {
					t.Errorf("Counts = %+v, want 3 alive", c)
				}
				if len(idx.Warnings) != len(tt.warnings) {
					t.Fatalf("Warnings = %+v, want %+v", idx.Warnings, tt.warnings)
				}
				for i, w := range idx.Warnings {
					if w.Namespace != tt.warnings[i].Namespace || w.Key != tt.warnings[i].Key || w.Reason != tt.warnings[i].Reason {
						t.Errorf("warning %d = %+v, want %+v", i, w, tt.warnings[i])
					}
					if w.Reason == model.WarnDuplicate && !strings.Contains(w.Detail, tt.kept) {
						t.Errorf("duplicate warning %+v does not name the kept entry %s", w, tt.kept)
					}
				}
			}
		})
	}
}

// randomEntries builds a messy env: conflicts, duplicates, equal heartbeats,
// invalid entries and warnings.
func randomEntries(t testing.TB, r *rand.Rand, n int) []model.Entry {
	apps := []string{"a", "b", "c", "d"}
	methods := []string{mLogin, mProfile, mUpdate, mCreate, mGet, mCheck}
	seen := map[string]bool{}
	var out []model.Entry
	for len(out) < n {
		nd := node{
			ns:      []string{"ns1", "ns2", "ns3"}[r.IntN(3)],
			app:     apps[r.IntN(len(apps))],
			lease:   int64(r.IntN(6) + 1),
			version: fmt.Sprintf("v%d", r.IntN(3)+1),
			runDate: t0.Add(time.Duration(r.IntN(5)) * 5 * time.Second),
		}
		for _, m := range methods {
			if r.IntN(3) == 0 {
				nd.methods = append(nd.methods, m)
			}
		}
		switch r.IntN(10) {
		case 0:
			nd.key = fmt.Sprintf("junk-%d", r.IntN(1000))
			nd.rawValue = "{not json"
		case 1:
			nd.key = fmt.Sprintf("%s/%d", nd.app, nd.lease)
		case 2:
			nd.methods = append(nd.methods, "bad method")
		}
		k := nd.ns + "/" + cmpOr(nd.key, model.CanonicalKey(nd.app, nd.lease))
		if seen[k] { // a ConfigMap has one value per key
			continue
		}
		seen[k] = true
		out = append(out, entry(t, nd))
	}
	return out
}

// dump renders an index with every order that readers observe.
func dump(idx *model.EnvIndex) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name %s ns %q apps %q methods %q conflicts %q\n", idx.Name, idx.Namespaces, idx.AppIDs, idx.MethodNames, idx.Conflicts)
	for _, id := range idx.AppIDs {
		a := idx.Apps[id]
		fmt.Fprintf(&b, "app %s %q %q %q\n", a.ID, ids(a.Nodes), a.Versions, a.Methods)
	}
	for _, name := range idx.MethodNames {
		for _, c := range idx.Methods[name].Claims {
			fmt.Fprintf(&b, "method %s %s %q\n", name, c.AppID, ids(c.Nodes))
		}
	}
	fmt.Fprintf(&b, "invalid %+v\nwarnings %+v\n", idx.Invalid, idx.Warnings)
	return b.String()
}

func TestBuildEnvIndependentOfInputOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 20 {
		in := randomEntries(t, r, 10+round*5)
		want := model.BuildEnv("prod", in)
		wantDump := dump(want)
		if len(want.Conflicts) == 0 || len(want.Invalid) == 0 || len(want.Warnings) == 0 {
			t.Fatalf("round %d: input not messy enough:\n%s", round, wantDump)
		}
		for range 10 {
			r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
			got := model.BuildEnv("prod", in)
			if d := dump(got); d != wantDump {
				t.Fatalf("round %d: index depends on input order:\n%s\nvs\n%s", round, d, wantDump)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d: index depends on input order (deep)", round)
			}
		}
		// Freshest first everywhere, and every instance once.
		seen := map[[2]any]bool{}
		for _, id := range want.AppIDs {
			nodes := want.Apps[id].Nodes
			for i, n := range nodes {
				if i > 0 && nodes[i-1].RunDate.Before(n.RunDate) {
					t.Errorf("app %s not freshest first: %q", id, ids(nodes))
				}
				k := [2]any{n.AppID, n.LeaseID}
				if seen[k] || n.AppID != id {
					t.Errorf("node %s/%s listed twice or under the wrong app", n.Namespace, n.Key)
				}
				seen[k] = true
			}
		}
	}
}

// sortedNodes returns n nodes with random heartbeats, freshest first (as
// BuildEnv leaves them), with runs of equal heartbeats.
func sortedNodes(r *rand.Rand, n int) []*model.Node {
	nodes := make([]*model.Node, n)
	for i := range nodes {
		nodes[i] = &model.Node{AppID: "a", LeaseID: int64(i + 1), RunDate: t0.Add(-time.Duration(r.IntN(n+1)) * time.Second)}
	}
	slices.SortStableFunc(nodes, func(a, b *model.Node) int { return b.RunDate.Compare(a.RunDate) })
	return nodes
}

func TestAliveCount(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 2, 15, 16, 17, 18, 31, 32, 33, 100, 257} {
		nodes := sortedNodes(r, n)
		// Every boundary: each heartbeat exactly at the cutoff, and 1 ns
		// either side, plus none and all alive.
		nows := []time.Time{t0.Add(-time.Hour), t0.Add(time.Hour)}
		for _, nd := range nodes {
			cut := nd.RunDate.Add(ttl)
			nows = append(nows, cut.Add(-1), cut, cut.Add(1))
		}
		for _, now := range nows {
			want := 0
			for _, nd := range nodes {
				if nd.Alive(now, ttl) {
					want++
				}
			}
			got := model.AliveCount(nodes, now, ttl)
			if got != want {
				t.Fatalf("n=%d now=t0%+v: AliveCount = %d, linear count %d", n, now.Sub(t0), got, want)
			}
			for i, nd := range nodes {
				if nd.Alive(now, ttl) != (i < got) {
					t.Fatalf("n=%d: alive nodes are not the prefix [0,%d)", n, got)
				}
			}
		}
	}
}

func TestAliveCountTable(t *testing.T) {
	mk := func(ages ...time.Duration) []*model.Node {
		out := make([]*model.Node, len(ages))
		for i, a := range ages {
			out[i] = &model.Node{RunDate: t0.Add(-a)}
		}
		return out
	}
	many := make([]time.Duration, 40) // binary search branch
	for i := range many {
		many[i] = time.Duration(i) * time.Second
	}
	tests := []struct {
		name  string
		nodes []*model.Node
		want  int
	}{
		{"none", nil, 0},
		{"one alive", mk(0), 1},
		{"one exactly at ttl", mk(ttl), 1},
		{"one just past ttl", mk(ttl + 1), 0},
		{"mixed", mk(0, 5*time.Second, 11*time.Second, time.Hour), 2},
		{"future heartbeat", mk(-time.Minute, 0), 2},
		{"40 nodes 1s apart", mk(many...), 11},
		{"40 nodes, all dead", mk(append([]time.Duration{}, many...)[11:]...), 0},
	}
	for _, tt := range tests {
		if got := model.AliveCount(tt.nodes, t0, ttl); got != tt.want {
			t.Errorf("%s: AliveCount = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestMethodWinner(t *testing.T) {
	// Three apps claim mLogin; "alpha" sorts first but has the oldest node.
	in := entries(t,
		node{ns: "ns", app: "gamma", lease: 1, runDate: t0.Add(2 * time.Second), methods: []string{mLogin}},
		node{ns: "ns", app: "alpha", lease: 2, runDate: t0.Add(-30 * time.Second), methods: []string{mLogin}},
		node{ns: "ns", app: "alpha", lease: 3, runDate: t0.Add(-20 * time.Second), methods: []string{mLogin}},
		node{ns: "ns", app: "beta", lease: 4, runDate: t0, methods: []string{mLogin}},
	)
	tests := []struct {
		name string
		now  time.Time
		want string
	}{
		{"all alive: first by app id", t0.Add(-20 * time.Second), "alpha"},
		{"first app's newest node exactly at ttl", t0.Add(-10 * time.Second), "alpha"},
		{"first app dead: falls through", t0.Add(-10*time.Second + 1), "beta"},
		{"second app exactly at ttl", t0.Add(ttl), "beta"},
		{"only the last app alive", t0.Add(ttl + 1), "gamma"},
		{"none alive: first by app id", t0.Add(time.Hour), "alpha"},
	}
	r := rand.New(rand.NewPCG(9, 10))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 10 {
				r.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				m := model.BuildEnv("prod", in).Methods[mLogin]
				if got := apps(m); !reflect.DeepEqual(got, []string{"alpha", "beta", "gamma"}) {
					t.Fatalf("claims %q not sorted by app id", got)
				}
				w := m.Winner(tt.now, ttl)
				if w < 0 || w >= len(m.Claims) {
					t.Fatalf("Winner = %d out of range", w)
				}
				if got := m.Claims[w].AppID; got != tt.want {
					t.Fatalf("winner %s, want %s", got, tt.want)
				}
			}
		})
	}
	// A method nobody serves alive still names its single claimant.
	m := model.BuildEnv("prod", entries(t, node{ns: "ns", app: "solo", lease: 1, runDate: t0, methods: []string{mLogin}})).Methods[mLogin]
	if w := m.Winner(t0.Add(time.Hour), ttl); w != 0 {
		t.Errorf("Winner = %d, want 0", w)
	}
}

func apps(m *model.Method) []string {
	var out []string
	for _, c := range m.Claims {
		out = append(out, c.AppID)
	}
	return out
}

func TestCounts(t *testing.T) {
	idx := model.BuildEnv("prod", entries(t,
		node{ns: "ns", app: "a", lease: 1, runDate: t0},
		node{ns: "ns", app: "a", lease: 2, runDate: t0.Add(-5 * time.Second)},
		node{ns: "ns", app: "a", lease: 3, runDate: t0.Add(-11 * time.Second)},
		node{ns: "ns", app: "a", lease: 4, runDate: t0.Add(-30 * time.Second)},
		node{ns: "ns", app: "b", lease: 5, runDate: t0.Add(-8 * time.Second)},
		node{ns: "ns", key: "bad", rawValue: "{}"},
	))
	tests := []struct {
		now      time.Time
		a, b, en model.Counts
	}{
		{t0.Add(-time.Hour), model.Counts{Alive: 4}, model.Counts{Alive: 1}, model.Counts{Alive: 5}},
		{t0, model.Counts{Alive: 2, Stale: 2}, model.Counts{Alive: 1}, model.Counts{Alive: 3, Stale: 2}},
		{t0.Add(2 * time.Second), model.Counts{Alive: 2, Stale: 2}, model.Counts{Alive: 1}, model.Counts{Alive: 3, Stale: 2}},
		{t0.Add(2*time.Second + 1), model.Counts{Alive: 2, Stale: 2}, model.Counts{Stale: 1}, model.Counts{Alive: 2, Stale: 3}},
		{t0.Add(6 * time.Second), model.Counts{Alive: 1, Stale: 3}, model.Counts{Stale: 1}, model.Counts{Alive: 1, Stale: 4}},
		{t0.Add(time.Hour), model.Counts{Stale: 4}, model.Counts{Stale: 1}, model.Counts{Stale: 5}},
	}
	for _, tt := range tests {
		if got := idx.Apps["a"].Counts(tt.now, ttl); got != tt.a {
			t.Errorf("now t0%+v: app a Counts = %+v, want %+v", tt.now.Sub(t0), got, tt.a)
		}
		if got := idx.Apps["b"].Counts(tt.now, ttl); got != tt.b {
			t.Errorf("now t0%+v: app b Counts = %+v, want %+v", tt.now.Sub(t0), got, tt.b)
		}
		if got := idx.Counts(tt.now, ttl); got != tt.en {
			t.Errorf("now t0%+v: env Counts = %+v, want %+v", tt.now.Sub(t0), got, tt.en)
		}
	}
}

func TestSnapshotSyncedAt(t *testing.T) {
	t1, t2, t3 := t0, t0.Add(time.Second), t0.Add(2*time.Second)
	tests := []struct {
		name       string
		namespaces []string
		synced     map[string]time.Time
		want       time.Time
	}{
		{"never synced", []string{"a"}, nil, time.Time{}},
		{"one namespace", []string{"a"}, map[string]time.Time{"a": t2}, t2},
		{"oldest of all", []string{"a", "b", "c"}, map[string]time.Time{"a": t2, "b": t1, "c": t3}, t1},
		{"one never synced (last)", []string{"a", "b"}, map[string]time.Time{"a": t2}, time.Time{}},
		{"one never synced (first)", []string{"a", "b"}, map[string]time.Time{"b": t2}, time.Time{}},
		{"unwatched namespaces ignored", []string{"a"}, map[string]time.Time{"a": t2, "z": t1}, t2},
		{"all namespaces", []string{""}, map[string]time.Time{"": t3}, t3},
		{"all namespaces never synced", []string{""}, map[string]time.Time{"a": t3}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := model.EmptySnapshot(tt.namespaces)
			for ns, at := range tt.synced {
				s.NamespaceSyncedAt[ns] = at
			}
			if got := s.SyncedAt(); !got.Equal(tt.want) {
				t.Errorf("SyncedAt = %v, want %v", got, tt.want)
			}
			if got, want := s.Ready(), !tt.want.IsZero(); got != want {
				t.Errorf("Ready = %v, want %v", got, want)
			}
		})
	}
	s := model.EmptySnapshot([]string{"a"})
	if s.Ready() || !s.SyncedAt().IsZero() || len(s.Envs) != 0 || len(s.EnvNames) != 0 {
		t.Errorf("EmptySnapshot = %+v", s)
	}
}

func TestSnapshotEnvSyncedAt(t *testing.T) {
	t1, t2, t3 := t0, t0.Add(time.Second), t0.Add(2*time.Second)
	tests := []struct {
		name    string
		watched []string
		envNS   []string
		synced  map[string]time.Time
		want    time.Time
	}{
		{"oldest of the env's namespaces", []string{"a", "b", "c"}, []string{"a", "b"}, map[string]time.Time{"a": t3, "b": t2, "c": t1}, t2},
		{"single namespace", []string{"a", "b"}, []string{"b"}, map[string]time.Time{"a": t1, "b": t3}, t3},
		{"all namespaces uses the cluster-wide read", []string{""}, []string{"x", "y"}, map[string]time.Time{"": t2, "x": t1}, t2},
		{"all namespaces never synced", []string{""}, []string{"x"}, map[string]time.Time{"x": t1}, time.Time{}},
		{"env namespace never synced (first)", []string{"a", "b"}, []string{"a", "b"}, map[string]time.Time{"b": t2}, time.Time{}},
		{"env namespace never synced (last)", []string{"a", "b"}, []string{"a", "b"}, map[string]time.Time{"a": t2}, time.Time{}},
		{"env namespace never synced (middle)", []string{"a", "b", "c"}, []string{"a", "b", "c"}, map[string]time.Time{"a": t2, "c": t3}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := model.EmptySnapshot(tt.watched)
			for ns, at := range tt.synced {
				s.NamespaceSyncedAt[ns] = at
			}
			env := &model.EnvIndex{Name: "prod", Namespaces: tt.envNS}
			if got := s.EnvSyncedAt(env); !got.Equal(tt.want) {
				t.Errorf("EnvSyncedAt = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWatched(t *testing.T) {
	all, some := model.AllNamespaces(), model.Watched{"firefly", "shop"}
	if !all.All() || some.All() || !(model.Watched{""}).All() || (model.Watched{"", "x"}).All() {
		t.Error("All misjudges a set of namespaces")
	}
	for _, ns := range []string{"firefly", "shop", "other", ""} {
		if !all.Has(ns) {
			t.Errorf("all namespaces lack %q", ns)
		}
	}
	if !some.Has("shop") || some.Has("other") || some.Has("") {
		t.Error("Has misjudges named namespaces")
	}
}

// A slot takes values of any type in turn: two readers that derive
// different things from one value must not crash each other.
func TestDerivedTakesAnyType(t *testing.T) {
	var d model.Derived
	if d.Load() != nil {
		t.Fatal("an empty slot loaded a value")
	}
	if got := d.LoadOrStore(1); got != 1 {
		t.Fatalf("LoadOrStore on an empty slot = %v", got)
	}
	if got := d.LoadOrStore("other"); got != 1 {
		t.Errorf("LoadOrStore on a full slot = %v, want what it held", got)
	}
	d.Store("text")
	d.Store(struct{}{})
	if got := d.Load(); got != struct{}{} {
		t.Errorf("Load = %v", got)
	}
}
