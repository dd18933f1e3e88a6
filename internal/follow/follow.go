// Package follow is the stage between published snapshots and everything
// that follows the route table: event streams, blocking queries and route
// sync. It judges each followed topic (one env's routes, or every env's) once
// per published snapshot and at every death by TTL, and when a topic's table
// changed it records one Revision: its tag, its tables and its Change from
// the revision before. Followers share that revision, and the encoded event
// of its change, instead of rendering and diffing on their own, so a change
// costs the same whether one client follows or a thousand, and an idle
// follower costs a parked goroutine.
//
// It reads the model only: what a follower writes (an HTTP body, an event)
// is its own business, cached once per Change through Change.Event.
package follow

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/model"
)

const (
	// AllEnvs is the topic of every env's routes at once; no env name holds
	// a '*'.
	AllEnvs = "*"
	// EveryChange is the topic that moves on every published snapshot and
	// every death by TTL, for views the route tables do not determine (a
	// version filter counts one version's instances, which the tables only
	// total).
	EveryChange = "\x00"
	// MaxLag is how many revisions a follower may fall behind by; a topic
	// remembers as many, so that a follower that comes back with a tag it
	// held within them is sent what changed since.
	MaxLag = 64
	// DefaultMaxFollowers caps the followers that may join a hub whose
	// Options leave MaxFollowers zero.
	DefaultMaxFollowers = 2048
)

// ErrBehind is Since's answer for a follower more than MaxLag revisions
// behind: it is to start over from a snapshot.
var ErrBehind = errors.New("follow: more than MaxLag revisions behind")

// ErrTooManyFollowers is Follow's answer beyond Options.MaxFollowers.
var ErrTooManyFollowers = errors.New("follow: too many followers")

// Options configure a Hub. Source is required; the other zero values are
// safe.
type Options struct {
	// Source hands out the current snapshot. A model.SnapshotNotifier wakes
	// the hub when it publishes; any other source is read when a follower
	// asks.
	Source model.SnapshotSource
	// Now is the clock liveness is judged by; nil means time.Now.
	Now func() time.Time
	// TTL is the liveness window.
	TTL time.Duration
	// MaxFollowers caps the followers that Follow lets join; zero means
	// the package default (DefaultMaxFollowers).
	MaxFollowers int
	// Registerer receives the followers' metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Hub keeps the followed topics and moves them on.
type Hub struct {
	src  model.SnapshotSource
	now  func() time.Time
	ttl  time.Duration
	max  int64
	open atomic.Int64
	m    *hubMetrics

	mu     sync.Mutex
	snap   *model.Snapshot // last judged
	at     time.Time       // when it was judged
	next   time.Time       // snap's next death by TTL after at
	topics map[string]*topic
	stop   chan struct{} // ends the loop; nil while nothing is followed
}

// topic is one followed view and the revisions it went through.
type topic struct {
	key  string
	refs int
	// history holds the last revisions, oldest first; the last is the head.
	history []*Revision
	ch      chan struct{} // closed when the head moves on
}

func (t *topic) head() *Revision { return t.history[len(t.history)-1] }

// EnvTable is one env's route table in a revision; Table is nil when the env
// is absent, which reads as a table with no routes.
type EnvTable struct {
	Env    string
	Table  *model.RouteTable
	Digest model.Digest
}

// Revision is one state of a topic's routes. It is immutable but for the
// memo of changes to it, and shared by every follower that reaches it.
type Revision struct {
	// Seq orders a topic's revisions: a follower at Seq s whose head is at
	// Seq h is h-s revisions behind.
	Seq uint64
	// Tag is the routes view's ETag for this state; empty for EveryChange.
	Tag string
	// Tables are the topic's envs' tables, by env name.
	Tables []EnvTable

	// change is what differs from the revision before, if any.
	change *Change
	mu     sync.Mutex
	since  map[uint64]*Change // by the older revision's Seq
}

// Change is what differs between two revisions of a topic: the envs whose
// tables differ, each with its routes added, changed and removed.
type Change struct {
	// Tag is the newer revision's.
	Tag  string
	Envs []model.RouteChanges

	once  sync.Once
	event []byte
	err   error
}

// Event returns encode's rendering of c, computed by the first caller and
// shared with every later one: a thousand followers of one change write one
// slice.
func (c *Change) Event(encode func(*Change) ([]byte, error)) ([]byte, error) {
	c.once.Do(func() { c.event, c.err = encode(c) })
	return c.event, c.err
}

// Head is a topic's current revision with the judgement it stands for.
type Head struct {
	*Revision
	// Snap and At are what the topic was last judged from: rendering Snap
	// at At gives the revision's tables, and so its tag.
	Snap *model.Snapshot
	At   time.Time
	// Changed is closed when the topic moves past this revision.
	Changed <-chan struct{}
}

// New returns a Hub over o.Source.
func New(o Options) (*Hub, error) {
	if o.Source == nil {
		return nil, errors.New("follow: Options.Source is required")
	}
	if o.MaxFollowers < 0 || o.TTL < 0 {
		return nil, errors.New("follow: Options.MaxFollowers and Options.TTL must not be negative")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxFollowers == 0 {
		o.MaxFollowers = DefaultMaxFollowers
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Hub{
		src:    o.Source,
		now:    o.Now,
		ttl:    o.TTL,
		max:    int64(o.MaxFollowers),
		m:      m,
		topics: make(map[string]*topic),
	}, nil
}

// Follower is one subscription to a topic, until Close.
type Follower struct {
	hub     *Hub
	t       *topic
	release func()
	once    sync.Once
}

// Follow lets a follower of kind ("stream" or "blocking", for the
// metrics) join topic key, or refuses it with ErrTooManyFollowers beyond the
// cap. key is an env name, AllEnvs or EveryChange.
func (h *Hub) Follow(key, kind string) (*Follower, error) {
	if h.open.Add(1) > h.max {
		h.open.Add(-1)
		h.m.rejected.Inc()
		return nil, ErrTooManyFollowers
	}
	g := h.m.open.WithLabelValues(kind)
	g.Inc()
	f := h.Subscribe(key)
	f.release = func() { g.Dec(); h.open.Add(-1) }
	return f, nil
}

// Subscribe follows topic key outside the cap: for the service's own
// followers, such as route sync.
func (h *Hub) Subscribe(key string) *Follower {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refreshLocked(h.now())
	t := h.topics[key]
	if t == nil {
		t = &topic{key: key, ch: make(chan struct{})}
		h.topics[key] = t
		h.judgeLocked(t, "")
	}
	t.refs++
	if h.stop == nil {
		h.stop = make(chan struct{})
		go h.loop(h.stop)
	}
	return &Follower{hub: h, t: t}
}

// MaxFollowers is the cap Follow applies.
func (h *Hub) MaxFollowers() int { return int(h.max) }

// Close ends the subscription; it is safe to call more than once.
func (f *Follower) Close() {
	f.once.Do(func() {
		h := f.hub
		h.mu.Lock()
		if f.t.refs--; f.t.refs == 0 {
			delete(h.topics, f.t.key)
		}
		if len(h.topics) == 0 && h.stop != nil {
			close(h.stop)
			h.stop = nil
		}
		h.mu.Unlock()
		if f.release != nil {
			f.release()
		}
	})
}

// Head brings the hub up to date and returns the topic's current revision.
func (f *Follower) Head() Head {
	h := f.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refreshLocked(h.now())
	return Head{Revision: f.t.head(), Snap: h.snap, At: h.at, Changed: f.t.ch}
}

// Find returns the newest revision the topic remembers with tag, or nil.
func (f *Follower) Find(tag string) *Revision {
	if tag == "" {
		return nil
	}
	h := f.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(f.t.history) - 1; i >= 0; i-- {
		if r := f.t.history[i]; r.Tag == tag {
			return r
		}
	}
	return nil
}

// Since is what changed from revision from to revision to, both of this
// topic and from older: computed once per pair and shared by every follower
// that asks. It is ErrBehind when from is more than MaxLag revisions older.
func Since(from, to *Revision) (*Change, error) {
	switch {
	case to.Seq > from.Seq && to.Seq-from.Seq > MaxLag:
		return nil, ErrBehind
	case to.Seq == from.Seq+1 && to.change != nil:
		return to.change, nil
	}
	to.mu.Lock()
	defer to.mu.Unlock()
	if c, ok := to.since[from.Seq]; ok {
		return c, nil
	}
	c := diff(from, to)
	if to.since == nil {
		to.since = make(map[uint64]*Change)
	}
	to.since[from.Seq] = c
	return c, nil
}

// diff compares two revisions' tables env by env; envs with equal digests
// are skipped without a look at their routes.
func diff(from, to *Revision) *Change {
	c := &Change{Tag: to.Tag}
	a, b := from.Tables, to.Tables
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var env string
		var old, cur *model.RouteTable
		switch {
		case j == len(b) || i < len(a) && a[i].Env < b[j].Env:
			env, old = a[i].Env, a[i].Table
			i++
		case i == len(a) || b[j].Env < a[i].Env:
			env, cur = b[j].Env, b[j].Table
			j++
		default:
			if a[i].Digest == b[j].Digest {
				i++
				j++
				continue
			}
			env, old, cur = a[i].Env, a[i].Table, b[j].Table
			i++
			j++
		}
		if d := model.DiffRoutes(env, old, cur); !d.Empty() {
			c.Envs = append(c.Envs, d)
		}
	}
	return c
}

// refreshLocked judges every topic at now if the snapshot changed or a node
// died since the last judgement; h.mu is held.
func (h *Hub) refreshLocked(now time.Time) {
	cur := h.src.Snapshot()
	if cur == nil {
		cur = emptySnapshot
	}
	cause := causeData
	switch {
	case cur != h.snap && !sameIndexes(cur, h.snap):
	case !h.next.IsZero() && !now.Before(h.next):
		cause = causeExpiry
	default:
		// At most fresher sync times: read from now on, nothing to judge.
		h.snap = cur
		return
	}
	h.snap, h.at = cur, now
	h.next = cur.NextExpiry(now, h.ttl)
	for _, t := range h.topics {
		h.judgeLocked(t, cause)
	}
}

var emptySnapshot = model.EmptySnapshot(nil)

// sameIndexes reports whether two snapshots hold the same env indexes, as
// the poller's snapshots do when a poll changed nothing but sync times.
func sameIndexes(a, b *model.Snapshot) bool {
	if b == nil || len(a.Envs) != len(b.Envs) {
		return false
	}
	for name, env := range a.Envs {
		if b.Envs[name] != env {
			return false
		}
	}
	return true
}

// judgeLocked records a new revision of t if its tables differ from its
// head's at the hub's judgement, and wakes its followers; cause is empty
// for a topic's first revision. h.mu is held.
func (h *Hub) judgeLocked(t *topic, cause string) {
	rev := &Revision{}
	if t.key != EveryChange {
		rev.Tables, rev.Tag = h.tablesLocked(t.key)
	}
	if len(t.history) > 0 {
		head := t.head()
		if t.key != EveryChange && rev.Tag == head.Tag {
			return
		}
		rev.Seq = head.Seq + 1
		rev.change = diff(head, rev)
	}
	if len(t.history) > MaxLag {
		// Drop the oldest; the backing array is reused, not grown.
		copy(t.history, t.history[1:])
		t.history[len(t.history)-1] = nil
		t.history = t.history[:len(t.history)-1]
	}
	t.history = append(t.history, rev)
	if cause == "" {
		return
	}
	close(t.ch)
	t.ch = make(chan struct{})
	h.m.wakeups.WithLabelValues(cause).Inc()
}

// tablesLocked are key's tables and tag at the hub's judgement.
func (h *Hub) tablesLocked(key string) ([]EnvTable, string) {
	if key == AllEnvs {
		out := make([]EnvTable, len(h.snap.EnvNames))
		for i, name := range h.snap.EnvNames {
			memo := h.snap.Envs[name].Routes(h.at, h.ttl)
			out[i] = EnvTable{Env: name, Table: memo.Table, Digest: memo.Digest}
		}
		return out, h.snap.RoutesDigest(h.at, h.ttl).Tag()
	}
	if env := h.snap.Envs[key]; env != nil {
		memo := env.Routes(h.at, h.ttl)
		return []EnvTable{{Env: key, Table: memo.Table, Digest: memo.Digest}}, memo.Digest.Tag()
	}
	// An env that is absent (or gone) is an empty table.
	d := (&model.RouteTable{Env: key}).Digest()
	return []EnvTable{{Env: key, Digest: d}}, d.Tag()
}

// published is the source's next-publication channel, or nil (never) for a
// source that does not announce its snapshots.
func (h *Hub) published() <-chan struct{} {
	if n, ok := h.src.(model.SnapshotNotifier); ok {
		return n.Published()
	}
	return nil
}

// loop judges on every publication and at every death by TTL until stop.
func (h *Hub) loop(stop chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		pub := h.published()
		h.mu.Lock()
		h.refreshLocked(h.now())
		next := h.next
		h.mu.Unlock()
		timer.Stop()
		var fire <-chan time.Time
		if !next.IsZero() {
			timer.Reset(max(next.Sub(h.now()), 0))
			fire = timer.C
		}
		select {
		case <-pub:
		case <-fire:
		case <-stop:
			return
		}
	}
}
