package model

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync/atomic"
	"time"
)

// Entry is one data entry of a registry ConfigMap after parsing: either a
// Node (possibly with warnings) or the error that made it unusable.
type Entry struct {
	Namespace string
	Key       string
	Node      *Node
	Warnings  []string
	Err       *EntryError
}

// Issue reports an entry that was skipped, or served with a warning.
type Issue struct {
	Namespace string `json:"namespace"`
	Key       string `json:"key"`
	Reason    string `json:"reason"`
	Detail    string `json:"detail,omitempty"`
}

// Claim is one app's nodes that serve a method, freshest heartbeat first.
type Claim struct {
	AppID string
	Nodes []*Node
}

// Method is one gRPC method of an env and every app that claims it.
type Method struct {
	Name string
	// Claims are sorted by app id: the order is the conflict rule (see Winner).
	Claims []Claim
	// Derived is what readers derive from the method (its resolution's
	// rendering).
	Derived Derived
}

// App is one app id of an env.
type App struct {
	ID string
	// Nodes are all valid nodes of the app, freshest heartbeat first.
	Nodes    []*Node
	Versions []string
	Methods  []string
}

// EnvIndex is the immutable index of one env across every watched namespace.
type EnvIndex struct {
	Name        string
	Namespaces  []string
	Apps        map[string]*App
	AppIDs      []string
	Methods     map[string]*Method
	MethodNames []string
	// Conflicts lists, sorted, the methods claimed by more than one app.
	Conflicts []string
	Invalid   []Issue
	Warnings  []Issue
	// Nodes are every valid node of the env, freshest heartbeat first. A
	// version registration stands here, and in its app and claims, as one
	// node per ready endpoint that keeps it alive, or as itself, not alive,
	// without one.
	Nodes []*Node
	// Services are the Services that the env's version registrations name,
	// sorted: whose endpoints the index was built with.
	Services []ServiceRef
	// routes memoizes the unfiltered route table (see Routes).
	routes atomic.Pointer[RoutesMemo]
}

// BuildEnv indexes the entries of one env, with no endpoint known.
func BuildEnv(name string, entries []Entry) *EnvIndex { return BuildEnvWith(name, entries, nil) }

// BuildEnvWith indexes the entries of one env, each version registration
// standing for the endpoints of its Service in eps that keep it alive.
// Entries are read-only; the returned index shares their nodes.
func BuildEnvWith(name string, entries []Entry, eps Endpoints) *EnvIndex {
	idx := &EnvIndex{
		Name:    name,
		Apps:    make(map[string]*App),
		Methods: make(map[string]*Method),
	}
	// A stable input order makes duplicates and issues deterministic.
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Key, b.Key))
	})

	namespaces := make(map[string]struct{})
	type identity struct {
		app   string
		lease int64
	}
	live := make(map[identity]*Node, len(sorted))
	for _, e := range sorted {
		namespaces[e.Namespace] = struct{}{}
		if e.Err != nil {
			idx.Invalid = append(idx.Invalid, Issue{e.Namespace, e.Key, e.Err.Reason, e.Err.Detail})
			continue
		}
		for _, w := range e.Warnings {
			idx.Warnings = append(idx.Warnings, Issue{Namespace: e.Namespace, Key: e.Key, Reason: w, Detail: warningDetail(w, e.Node)})
		}
		id := identity{e.Node.AppID, e.Node.LeaseID}
		prev, dup := live[id]
		switch {
		case !dup:
			live[id] = e.Node
		case e.Node.Heartbeat().After(prev.Heartbeat()):
			live[id] = e.Node
			idx.Warnings = append(idx.Warnings, Issue{prev.Namespace, prev.Key, WarnDuplicate, "superseded by fresher entry " + e.Namespace + "/" + e.Key})
		default:
			idx.Warnings = append(idx.Warnings, Issue{e.Namespace, e.Key, WarnDuplicate, "superseded by fresher entry " + prev.Namespace + "/" + prev.Key})
		}
	}
	for ns := range namespaces {
		idx.Namespaces = append(idx.Namespaces, ns)
	}
	sort.Strings(idx.Namespaces)

	// Each entry stands as one or more nodes: a version registration as
	// one per ready endpoint. The index is built per entry, not per node,
	// so that 36,000 endpoints cost their pointers, not their sorting and
	// their methods' map lookups.
	type standing struct {
		entry *Node
		nodes []*Node
	}
	stands := make([]standing, 0, len(live))
	services := make(map[ServiceRef]struct{})
	total := 0
	for _, n := range live {
		st := standing{entry: n, nodes: []*Node{n}}
		if svc, ok := ServiceOfNode(n); ok && n.ServiceKept {
			services[svc] = struct{}{}
			if ready := eps[svc].For(n.Version); len(ready) > 0 {
				// Sorted by pod, as compareFreshestFirst orders them.
				all := make([]Node, len(ready))
				st.nodes = make([]*Node, len(ready))
				for i := range ready {
					all[i] = *n
					all[i].Endpoint = &ready[i]
					st.nodes[i] = &all[i]
				}
			}
		}
		total += len(st.nodes)
		stands = append(stands, st)
	}
	idx.Services = slices.SortedFunc(maps.Keys(services), compareServices)
	// The nodes of one entry differ only by pod, and sort together.
	slices.SortFunc(stands, func(a, b standing) int { return compareFreshestFirst(a.nodes[0], b.nodes[0]) })
	nodes := make([]*Node, 0, total)
	for _, st := range stands {
		nodes = append(nodes, st.nodes...)
	}
	idx.Nodes = nodes

	// Entries arrive freshest first, so every list built by appending stays so.
	claims := make(map[string]map[string][]*Node)
	versions := make(map[string]map[string]struct{})
	methods := make(map[string]map[string]struct{})
	for _, st := range stands {
		n := st.entry
		app := idx.Apps[n.AppID]
		if app == nil {
			app = &App{ID: n.AppID}
			idx.Apps[n.AppID] = app
			versions[n.AppID] = make(map[string]struct{})
			methods[n.AppID] = make(map[string]struct{})
		}
		app.Nodes = append(app.Nodes, st.nodes...)
		versions[n.AppID][n.Version] = struct{}{}
		for _, m := range n.Methods {
			methods[n.AppID][m] = struct{}{}
			byApp := claims[m]
			if byApp == nil {
				byApp = make(map[string][]*Node, 1)
				claims[m] = byApp
			}
			byApp[n.AppID] = append(byApp[n.AppID], st.nodes...)
		}
	}
	for id, app := range idx.Apps {
		idx.AppIDs = append(idx.AppIDs, id)
		app.Versions = sortedKeys(versions[id])
		app.Methods = sortedKeys(methods[id])
	}
	sort.Strings(idx.AppIDs)

	for name, byApp := range claims {
		m := &Method{Name: name, Claims: make([]Claim, 0, len(byApp))}
		for app, ns := range byApp {
			m.Claims = append(m.Claims, Claim{AppID: app, Nodes: ns})
		}
		slices.SortFunc(m.Claims, func(a, b Claim) int { return cmp.Compare(a.AppID, b.AppID) })
		idx.Methods[name] = m
		idx.MethodNames = append(idx.MethodNames, name)
		if len(m.Claims) > 1 {
			idx.Conflicts = append(idx.Conflicts, name)
		}
	}
	sort.Strings(idx.MethodNames)
	sort.Strings(idx.Conflicts)
	return idx
}

// warningDetail explains a warning where the reason alone does not.
func warningDetail(reason string, n *Node) string {
	if reason != WarnRunDateInFuture {
		return ""
	}
	return fmt.Sprintf("run_date %s was %s ahead of the reader's clock when it read this value; "+
		"liveness counts from that reading, %s, until the value changes",
		n.RunDate.UTC().Format(time.RFC3339), n.RunDateAhead().Round(time.Second), n.ObservedAt.UTC().Format(time.RFC3339))
}

// compareFreshestFirst orders nodes by heartbeat, newest first, with a total
// tie-break so that equal heartbeats never reorder between rebuilds.
func compareFreshestFirst(a, b *Node) int {
	return cmp.Or(
		b.Heartbeat().Compare(a.Heartbeat()),
		cmp.Compare(a.AppID, b.AppID),
		cmp.Compare(a.LeaseID, b.LeaseID),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Key, b.Key),
		cmp.Compare(endpointPod(a), endpointPod(b)),
	)
}

func endpointPod(n *Node) string {
	if n.Endpoint == nil {
		return ""
	}
	return n.Endpoint.Pod
}

func compareServices(a, b ServiceRef) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

func sortedKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// AliveCount returns how many of nodes, sorted freshest first, are alive:
// the alive ones are always a prefix.
func AliveCount(nodes []*Node, now time.Time, ttl time.Duration) int {
	cutoff := now.Add(-ttl)
	// Linear for the usual handful of nodes; binary search beyond.
	if len(nodes) <= 16 {
		for i, n := range nodes {
			if n.Heartbeat().Before(cutoff) {
				return i
			}
		}
		return len(nodes)
	}
	return sort.Search(len(nodes), func(i int) bool { return nodes[i].Heartbeat().Before(cutoff) })
}

// Winner applies the conflict rule: among the apps that claim the method, the
// first by app id that has an alive node wins; when none is alive, the first
// by app id (so that a caller learns who claims it). It is deterministic and
// only changes when the claimants or their liveness change. It returns the
// index into m.Claims.
func (m *Method) Winner(now time.Time, ttl time.Duration) int {
	for i := range m.Claims {
		if AliveCount(m.Claims[i].Nodes, now, ttl) > 0 {
			return i
		}
	}
	return 0
}

// Counts are the instance tallies of an env or app at one moment.
type Counts struct {
	Alive int
	Stale int
}

// Counts tallies the app's alive and stale nodes at now.
func (a *App) Counts(now time.Time, ttl time.Duration) Counts {
	alive := AliveCount(a.Nodes, now, ttl)
	return Counts{Alive: alive, Stale: len(a.Nodes) - alive}
}

// Counts tallies the env's alive and stale nodes at now.
func (e *EnvIndex) Counts(now time.Time, ttl time.Duration) Counts {
	var c Counts
	for _, id := range e.AppIDs {
		ac := e.Apps[id].Counts(now, ttl)
		c.Alive += ac.Alive
		c.Stale += ac.Stale
	}
	return c
}

// Snapshot is an immutable view of the whole registry at one sync. Handlers
// read it without locks; the poller replaces it atomically.
type Snapshot struct {
	Envs     map[string]*EnvIndex
	EnvNames []string
	// NamespaceSyncedAt is when each watched namespace was last read
	// successfully; a namespace never read is absent.
	NamespaceSyncedAt map[string]time.Time
	// Namespaces are the watched namespaces.
	Namespaces Watched
	// AwaitingEndpoints says that the endpoints of the Services version
	// registrations name have not been read yet: until they are, the
	// snapshot is not ready, so that no version is reported down for it.
	AwaitingEndpoints bool
	// Derived is what readers derive from the snapshot (every env's routes,
	// rendered).
	Derived Derived
}

// Watched names the namespaces a replica reads: some by name, or all of
// them. All is [""], the API server's own name for every namespace in a
// LIST, so that a reader LISTs each element of it as it is.
type Watched []string

// AllNamespaces watches every namespace.
func AllNamespaces() Watched { return Watched{""} }

// All reports whether w is every namespace.
func (w Watched) All() bool { return len(w) == 1 && w[0] == "" }

// Has reports whether namespace is watched.
func (w Watched) Has(namespace string) bool { return w.All() || slices.Contains(w, namespace) }

// Derived keeps what a reader derives from an immutable value of the index,
// such as its rendering as an HTTP answer, so that it is derived once and
// dropped together with the value. The model never looks inside. A slot
// takes a value of any type: readers type-assert what they load, and one
// that finds another's type derives its own.
type Derived struct{ p atomic.Pointer[derived] }

// derived boxes a slot's value, so that values of different types may
// follow each other in one slot (atomic.Value would panic).
type derived struct{ v any }

// Load returns what was stored, or nil.
func (d *Derived) Load() any {
	if b := d.p.Load(); b != nil {
		return b.v
	}
	return nil
}

// Store keeps x.
func (d *Derived) Store(x any) { d.p.Store(&derived{x}) }

// LoadOrStore returns what was stored, storing x first if nothing was.
func (d *Derived) LoadOrStore(x any) any {
	if d.p.CompareAndSwap(nil, &derived{x}) {
		return x
	}
	return d.Load()
}

// Resynced is s read again with nothing changed: the same indexes, new sync
// times. What readers derived from s (every env's routes, rendered) holds
// for it too and is carried over, so that a poll at rest costs no reader a
// rendering.
func (s *Snapshot) Resynced(syncedAt map[string]time.Time) *Snapshot {
	out := &Snapshot{Envs: s.Envs, EnvNames: s.EnvNames, NamespaceSyncedAt: syncedAt, Namespaces: s.Namespaces, AwaitingEndpoints: s.AwaitingEndpoints}
	out.Derived.p.Store(s.Derived.p.Load())
	return out
}

// Services are the Services that the snapshot's version registrations name,
// sorted: whose endpoints keep them alive.
func (s *Snapshot) Services() []ServiceRef {
	set := make(map[ServiceRef]struct{})
	for _, env := range s.Envs {
		for _, svc := range env.Services {
			set[svc] = struct{}{}
		}
	}
	return slices.SortedFunc(maps.Keys(set), compareServices)
}

// EmptySnapshot is what readers see before the first sync.
func EmptySnapshot(namespaces Watched) *Snapshot {
	return &Snapshot{Envs: map[string]*EnvIndex{}, NamespaceSyncedAt: map[string]time.Time{}, Namespaces: namespaces}
}

// SyncedAt is the oldest last successful read among the watched namespaces:
// the age of the least fresh data in the snapshot. Zero until all synced.
func (s *Snapshot) SyncedAt() time.Time { return s.oldestSync(s.Namespaces) }

// oldestSync is the oldest last successful read among namespaces; zero
// until all of them synced.
func (s *Snapshot) oldestSync(namespaces []string) time.Time {
	var oldest time.Time
	for _, ns := range namespaces {
		t, ok := s.NamespaceSyncedAt[ns]
		if !ok {
			return time.Time{}
		}
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	return oldest
}

// Ready reports whether every watched namespace has been read at least once,
// and the endpoints of version registrations too.
func (s *Snapshot) Ready() bool { return !s.AwaitingEndpoints && !s.SyncedAt().IsZero() }

// EnvSyncedAt is the oldest last successful read among the env's namespaces.
// Zero until all of them synced.
func (s *Snapshot) EnvSyncedAt(env *EnvIndex) time.Time {
	if s.Namespaces.All() {
		return s.NamespaceSyncedAt[""]
	}
	return s.oldestSync(env.Namespaces)
}

// SnapshotSource hands out the current snapshot; it is what handlers depend on.
type SnapshotSource interface {
	Snapshot() *Snapshot
}

// SnapshotNotifier is a SnapshotSource that announces its publications, so
// that followers wait on a channel instead of polling.
type SnapshotNotifier interface {
	SnapshotSource
	// Published returns a channel that is closed once a snapshot whose
	// indexes differ from those of the one Snapshot returns after this call
	// is published. A snapshot that only refreshes sync times is swapped in
	// without an announcement.
	Published() <-chan struct{}
}
