package model

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net"
	"slices"
	"strings"
	"time"
)

// The route table is what a router needs of an env: for each method, the app
// that owns it and the Service addresses to send it to. It holds nothing that
// moves with a heartbeat, so it changes only when routing does: a method
// appears or goes, a claim moves, a target appears or goes, or a target's
// versions or live count change (by a write or by a TTL running out).

// RouteTarget is one address a method's calls go to.
type RouteTarget struct {
	// Internal is the Service DNS name and port (network.internal).
	Internal string
	// External is the freshest instance's external address, if any.
	External string
	// Versions are the versions (Istio subsets) live behind the address, sorted.
	Versions []string
	// Instances is how many live instances stand behind the address.
	Instances int
}

// Claimant is one app that claims a method, with its live instance count.
type Claimant struct {
	AppID string
	Alive int
}

// Route is where one method's calls go.
type Route struct {
	Method string
	// AppID is the winning claimant (Method.Winner).
	AppID string
	// Targets are the winner's live addresses, Service DNS names first; empty
	// when no claimant has a live instance (the method exists but is down).
	Targets []RouteTarget
	// Claimants lists every claimant, by app id, when more than one app
	// claims the method; nil otherwise.
	Claimants []Claimant
}

// Equal reports whether two routes send calls to the same places.
func (r *Route) Equal(o *Route) bool {
	return r.Method == o.Method && r.AppID == o.AppID &&
		slices.EqualFunc(r.Targets, o.Targets, func(a, b RouteTarget) bool {
			return a.Internal == b.Internal && a.External == b.External &&
				a.Instances == b.Instances && slices.Equal(a.Versions, b.Versions)
		}) &&
		slices.Equal(r.Claimants, o.Claimants)
}

// RouteTable is an env's routes at one liveness state.
type RouteTable struct {
	Env string
	// Routes are sorted by method.
	Routes []Route
}

// Lookup returns the route of method, or nil.
func (t *RouteTable) Lookup(method string) *Route {
	i, ok := slices.BinarySearchFunc(t.Routes, method, func(r Route, m string) int { return strings.Compare(r.Method, m) })
	if !ok {
		return nil
	}
	return &t.Routes[i]
}

// RouteFor renders one method's route at now. A non-empty version keeps
// only that version's instances of the winner, as a resolution does.
func (m *Method) RouteFor(now time.Time, ttl time.Duration, version string) Route {
	winner := m.Winner(now, ttl)
	claim := m.Claims[winner]
	nodes := claim.Nodes[:AliveCount(claim.Nodes, now, ttl)]
	if version != "" {
		kept := make([]*Node, 0, len(nodes))
		for _, n := range nodes {
			if n.Version == version {
				kept = append(kept, n)
			}
		}
		nodes = kept
	}
	r := Route{Method: m.Name, AppID: claim.AppID, Targets: Targets(nodes)}
	if len(m.Claims) > 1 {
		r.Claimants = make([]Claimant, len(m.Claims))
		for i, c := range m.Claims {
			r.Claimants[i] = Claimant{AppID: c.AppID, Alive: AliveCount(c.Nodes, now, ttl)}
		}
	}
	return r
}

// Targets groups nodes, freshest first, by the address clients connect to:
// Service DNS names first, as they survive pod restarts, then IP literals;
// within each, freshest heartbeat first.
func Targets(nodes []*Node) []RouteTarget {
	var out []RouteTarget
	index := make(map[string]int, len(nodes))
	for _, n := range nodes {
		i, ok := index[n.Network.Internal]
		if !ok {
			i = len(out)
			index[n.Network.Internal] = i
			// The first node seen is the freshest: its external address wins.
			out = append(out, RouteTarget{Internal: n.Network.Internal, External: n.Network.External})
		}
		t := &out[i]
		t.Instances++
		if !slices.Contains(t.Versions, n.Version) {
			t.Versions = append(t.Versions, n.Version)
		}
	}
	for i := range out {
		slices.Sort(out[i].Versions)
	}
	slices.SortStableFunc(out, func(a, b RouteTarget) int {
		ai, bi := isIPLiteral(a.Internal), isIPLiteral(b.Internal)
		switch {
		case ai == bi:
			return 0
		case bi:
			return -1
		}
		return 1
	})
	return out
}

// isIPLiteral reports whether an address's host is an IP rather than a name.
func isIPLiteral(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return net.ParseIP(host) != nil
}

// RouteTable renders the env's routes at now, every method in order; a
// non-empty version keeps only that version's instances.
func (e *EnvIndex) RouteTable(now time.Time, ttl time.Duration, version string) *RouteTable {
	t := &RouteTable{Env: e.Name, Routes: make([]Route, 0, len(e.MethodNames))}
	for _, name := range e.MethodNames {
		m := e.Methods[name]
		// One version's table lists what that version serves: a method
		// whose owner has no instance of it, alive or dead, is not down in
		// it but absent from it.
		if version != "" && !m.Claims[m.Winner(now, ttl)].HasVersion(version) {
			continue
		}
		t.Routes = append(t.Routes, m.RouteFor(now, ttl, version))
	}
	return t
}

// HasVersion reports whether any of the claim's instances, alive or dead,
// is of version.
func (c Claim) HasVersion(version string) bool {
	return slices.ContainsFunc(c.Nodes, func(n *Node) bool { return n.Version == version })
}

// Digest names a route table by its content: equal tables digest equally on
// every replica, and anything that changes where calls go changes it. It is
// computed from the table, not from a rendering of it, so that every reader
// of routing (the routes view, its followers, route sync) agrees on one tag.
type Digest [8]byte

// Tag is the digest as a quoted entity tag: the routes view's ETag and the id
// of its stream's events.
func (d Digest) Tag() string {
	var b [2 + 2*len(d)]byte
	b[0], b[len(b)-1] = '"', '"'
	hex.Encode(b[1:len(b)-1], d[:])
	return string(b[:])
}

// Digest hashes every field of the table in order, each length-prefixed so
// that no two tables encode alike.
func (t *RouteTable) Digest() Digest {
	d := digester{buf: make([]byte, 0, 64*len(t.Routes)+64)}
	d.str(t.Env)
	d.int(len(t.Routes))
	for i := range t.Routes {
		r := &t.Routes[i]
		d.str(r.Method)
		d.str(r.AppID)
		d.int(len(r.Targets))
		for _, tg := range r.Targets {
			d.str(tg.Internal)
			d.str(tg.External)
			d.int(tg.Instances)
			d.int(len(tg.Versions))
			for _, v := range tg.Versions {
				d.str(v)
			}
		}
		d.int(len(r.Claimants))
		for _, c := range r.Claimants {
			d.str(c.AppID)
			d.int(c.Alive)
		}
	}
	return d.sum()
}

// RoutesDigest names every env's route table at now at once: the env names
// and their tables' digests, in order.
func (s *Snapshot) RoutesDigest(now time.Time, ttl time.Duration) Digest {
	d := digester{buf: make([]byte, 0, (len(Digest{})+32)*len(s.EnvNames)+8)}
	d.int(len(s.EnvNames))
	for _, name := range s.EnvNames {
		d.str(name)
		sum := s.Envs[name].Routes(now, ttl).Digest
		d.buf = append(d.buf, sum[:]...)
	}
	return d.sum()
}

type digester struct{ buf []byte }

func (d *digester) int(n int) { d.buf = binary.AppendUvarint(d.buf, uint64(n)) }

func (d *digester) str(s string) {
	d.int(len(s))
	d.buf = append(d.buf, s...)
}

func (d *digester) sum() Digest {
	full := sha256.Sum256(d.buf)
	return Digest(full[:len(Digest{})])
}

// RoutesMemo is an env's route table for one liveness state.
type RoutesMemo struct {
	// Alive is how many of the env's nodes were alive: within one index the
	// alive nodes are those whose heartbeat is at or after a cutoff, so their
	// count alone names the liveness state.
	Alive int
	Table *RouteTable
	// Digest is Table's, computed once.
	Digest Digest
	// Derived is what readers derive from Table (its renderings).
	Derived Derived
}

// Routes returns the env's unfiltered route table at now, memoized on the
// index for as long as the same nodes are alive.
func (e *EnvIndex) Routes(now time.Time, ttl time.Duration) *RoutesMemo {
	alive := AliveCount(e.Nodes, now, ttl)
	if m := e.routes.Load(); m != nil && m.Alive == alive {
		return m
	}
	t := e.RouteTable(now, ttl, "")
	m := &RoutesMemo{Alive: alive, Table: t, Digest: t.Digest()}
	e.routes.Store(m)
	return m
}

// NextExpiry is the first instant after now at which one of the env's alive
// nodes dies by its TTL; zero when none is alive.
func (e *EnvIndex) NextExpiry(now time.Time, ttl time.Duration) time.Time {
	alive := AliveCount(e.Nodes, now, ttl)
	if alive == 0 {
		return time.Time{}
	}
	// Alive while now <= heartbeat + ttl: dead a nanosecond later. The
	// heartbeat, not run_date: a run_date ahead of the reader's clock counts
	// from when it was read (Node.Heartbeat), as AliveCount judges it.
	last := e.Nodes[alive-1].Heartbeat()
	if last.Equal(readyHeartbeat) {
		// Every alive node is a ready endpoint: none expires with time.
		return time.Time{}
	}
	return last.Add(ttl + time.Nanosecond)
}

// NextExpiry is the earliest NextExpiry of the snapshot's envs; zero when no
// node is alive.
func (s *Snapshot) NextExpiry(now time.Time, ttl time.Duration) time.Time {
	var next time.Time
	for _, env := range s.Envs {
		if t := env.NextExpiry(now, ttl); !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// RouteChanges is what changed between two route tables of one env.
type RouteChanges struct {
	Env     string
	Added   []Route
	Changed []Route
	Removed []string
}

// Empty reports whether nothing changed.
func (c *RouteChanges) Empty() bool {
	return len(c.Added) == 0 && len(c.Changed) == 0 && len(c.Removed) == 0
}

// DiffRoutes compares two tables of one env; a nil table has no routes.
func DiffRoutes(env string, old, cur *RouteTable) RouteChanges {
	c := RouteChanges{Env: env}
	var a, b []Route
	if old != nil {
		a = old.Routes
	}
	if cur != nil {
		b = cur.Routes
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].Method < b[j].Method:
			c.Removed = append(c.Removed, a[i].Method)
			i++
		case i == len(a) || b[j].Method < a[i].Method:
			c.Added = append(c.Added, b[j])
			j++
		default:
			if !a[i].Equal(&b[j]) {
				c.Changed = append(c.Changed, b[j])
			}
			i++
			j++
		}
	}
	return c
}
