package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/metrics"
	"github.com/acme/registry-api/internal/model"
)

// Following the registry: blocking queries (If-None-Match + Prefer: wait=N)
// and event streams. Both wait on a topic's channel, which the follower
// closes when the topic's route table changes: on a published snapshot that
// changes it, or at the instant a node's TTL runs out. An idle follower costs
// a parked goroutine and nothing per change of other envs' data.

// longLived reports whether r may stay open for minutes: an event stream, or
// a blocking query. Caps and timeouts meant for ordinary requests exempt
// these; followers have their own cap (Deps.MaxFollowers) and set their own
// write deadlines. It reads only the path and headers, so it serves
// middleware that runs before routing.
func longLived(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	p := r.URL.Path
	if p == "/v1/routes/events" || strings.HasPrefix(p, "/v1/envs/") && strings.HasSuffix(p, "/routes/events") {
		return true
	}
	if len(r.Header[hdrIfNoneMatch]) == 0 || preferredWait(r) <= 0 {
		return false
	}
	return p == "/v1/routes" || strings.HasPrefix(p, "/v1/envs/") &&
		(strings.HasSuffix(p, "/routes") || strings.Contains(p, "/methods/"))
}

const (
	// maxWait caps Prefer: wait; the answer's Preference-Applied says what
	// was applied.
	maxWait = 5 * time.Minute
	// writeSlack is how long past its wait a blocked answer may take to write.
	writeSlack = 30 * time.Second
	// defaultMaxFollowers caps open streams and blocked queries together.
	defaultMaxFollowers = 4096
	// allEnvs is the topic of every env at once; no env name has a '*'.
	allEnvs = "*"
	// everyChange is the topic that fires on every refresh, for views the
	// env's table does not fully determine (a version filter).
	everyChange = "\x00"
)

const (
	hdrPrefer            = "Prefer"
	hdrPreferenceApplied = "Preference-Applied"
)

// preferredWait reads RFC 7240's wait preference, in seconds; 0 when absent
// or malformed.
func preferredWait(r *http.Request) time.Duration {
	for _, line := range r.Header[hdrPrefer] {
		for pref := range strings.SplitSeq(line, ",") {
			name, value, ok := strings.Cut(strings.TrimSpace(pref), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "wait") {
				continue
			}
			value, _, _ = strings.Cut(value, ";")
			secs, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(value), `"`), 10, 32)
			if err != nil {
				return 0
			}
			return min(time.Duration(secs)*time.Second, maxWait)
		}
	}
	return 0
}

// topic is one followed view: an env's routes, every env's, or every change.
type topic struct {
	refs int
	tag  string
	// gen counts the topic's changes since it was first followed.
	gen uint64
	ch  chan struct{}
}

// follower tracks the topics that clients follow and wakes them.
type follower struct {
	src   model.SnapshotSource
	live  liveness
	drain <-chan struct{}
	max   int64
	open  atomic.Int64
	m     *followMetrics

	mu     sync.Mutex
	snap   *model.Snapshot
	at     time.Time
	next   time.Time // the snapshot's next death by TTL after at
	topics map[string]*topic
	stop   chan struct{} // closes the loop; nil while no topic is followed
}

func newFollower(deps Deps, m *followMetrics) *follower {
	max := int64(deps.MaxFollowers)
	if max == 0 {
		max = defaultMaxFollowers
	}
	return &follower{
		src:    deps.Snapshots,
		live:   liveness{now: deps.Now, ttl: deps.TTL},
		drain:  deps.Drain,
		max:    max,
		m:      m,
		topics: make(map[string]*topic),
	}
}

// published is the source's next-publication channel, or nil (never) for a
// source that does not announce its snapshots.
func (f *follower) published() <-chan struct{} {
	if n, ok := f.src.(model.SnapshotNotifier); ok {
		return n.Published()
	}
	return nil
}

// admit counts a follower in, or refuses it beyond the cap.
func (f *follower) admit(kind string) (release func(), err error) {
	if f.open.Add(1) > f.max {
		f.open.Add(-1)
		f.m.rejected.Inc()
		return nil, model.Errorf(model.CodeTooManyFollowers, "this replica already serves %d streams and blocked queries; retry, or ask another replica", f.max)
	}
	g := f.m.open.WithLabelValues(kind)
	g.Inc()
	return func() { g.Dec(); f.open.Add(-1) }, nil
}

// subscribe follows key until the returned func is called.
func (f *follower) subscribe(key string) (unsubscribe func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshLocked(f.live.now())
	t := f.topics[key]
	if t == nil {
		t = &topic{ch: make(chan struct{}), tag: f.tagOf(key)}
		f.topics[key] = t
	}
	t.refs++
	if f.stop == nil {
		f.stop = make(chan struct{})
		go f.loop(f.stop)
	}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if t.refs--; t.refs == 0 {
			delete(f.topics, key)
		}
		if len(f.topics) == 0 {
			close(f.stop)
			f.stop = nil
		}
	}
}

// followState is what a follower renders from: the snapshot and the instant
// the topic was last judged at, and the channel closed at its next change.
type followState struct {
	snap    *model.Snapshot
	at      time.Time
	gen     uint64
	changed <-chan struct{}
}

// state brings the follower up to date and returns key's state; key must be
// subscribed. Rendering at the returned instant, not the clock's, keeps what a
// client is answered and what wakes it one and the same judgement.
func (f *follower) state(key string) followState {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshLocked(f.live.now())
	t := f.topics[key]
	return followState{snap: f.snap, at: f.at, gen: t.gen, changed: t.ch}
}

// refreshLocked judges every topic at now if the snapshot changed or a node
// died since the last judgement, and wakes the topics that changed.
func (f *follower) refreshLocked(now time.Time) {
	cur := current(f.src)
	cause := causeData
	switch {
	case cur != f.snap:
	case !f.next.IsZero() && !now.Before(f.next):
		cause = causeExpiry
	default:
		return
	}
	f.snap, f.at = cur, now
	f.next = cur.NextExpiry(now, f.live.ttl)
	for key, t := range f.topics {
		tag := f.tagOf(key)
		if key != everyChange && tag == t.tag {
			continue
		}
		t.tag = tag
		t.gen++
		close(t.ch)
		t.ch = make(chan struct{})
		f.m.wakeups.WithLabelValues(cause).Inc()
	}
}

// tagOf is key's current tag; f.mu is held.
func (f *follower) tagOf(key string) string {
	var r *model.Rendered
	var err error
	switch key {
	case everyChange:
		return ""
	case allEnvs:
		r, err = renderAllRoutes(f.snap, f.at, f.live.ttl)
	default:
		env := f.snap.Envs[key]
		if env == nil {
			return ""
		}
		r, err = renderRoutes(env, routeFilter{}, f.at, f.live.ttl)
	}
	if err != nil {
		return "" // only a bug fails to render; the request will report it
	}
	return r.ETag[0]
}

// loop refreshes on every publication and at every death by TTL until stop.
func (f *follower) loop(stop chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		pub := f.published()
		f.mu.Lock()
		f.refreshLocked(f.live.now())
		next := f.next
		f.mu.Unlock()
		timer.Stop()
		var fire <-chan time.Time
		if !next.IsZero() {
			timer.Reset(max(next.Sub(f.live.now()), 0))
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

// serveBlocking answers a view rendered by render, waiting first when the
// request holds a tag (If-None-Match) and asks to wait (Prefer: wait=N): the
// answer comes once the view's tag differs, or as 304 when the wait runs
// out or the server drains.
func (f *follower) serveBlocking(w http.ResponseWriter, r *http.Request, key string, render func(*model.Snapshot, time.Time) (*model.Rendered, error)) {
	inm := r.Header[hdrIfNoneMatch]
	wait := preferredWait(r)
	if len(inm) == 0 || wait <= 0 {
		out, err := render(current(f.src), f.live.now())
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeBody(w, r, http.StatusOK, ctJSON, out.Body, out.ETag, out.Length)
		return
	}
	if r.URL.Query().Has("version") {
		key = everyChange
	}
	release, err := f.admit("blocking")
	if err != nil {
		w.Header()[hdrRetryAfter] = retryFollowAfter
		writeProblem(w, r, err)
		return
	}
	defer release()
	unsubscribe := f.subscribe(key)
	defer unsubscribe()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + writeSlack))
	w.Header()[hdrPreferenceApplied] = []string{"wait=" + strconv.FormatInt(int64(wait/time.Second), 10)}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		st := f.state(key)
		out, err := render(st.snap, st.at)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		if !etagMatches(inm, out.ETag[0]) {
			writeBody(w, r, http.StatusOK, ctJSON, out.Body, out.ETag, out.Length)
			return
		}
		select {
		case <-st.changed:
			continue
		case <-timer.C:
		case <-f.drain:
		case <-r.Context().Done():
			return
		}
		writeBody(w, r, http.StatusOK, ctJSON, out.Body, out.ETag, out.Length) // a 304: the tag matches
		return
	}
}

// retryFollowAfter is when a refused follower may try again.
var retryFollowAfter = []string{"1"}

const (
	causeData   = "data"
	causeExpiry = "expiry"
)

// followMetrics count followers and what woke them.
type followMetrics struct {
	open     *prometheus.GaugeVec
	rejected prometheus.Counter
	wakeups  *prometheus.CounterVec
	events   *prometheus.CounterVec
	resets   *prometheus.CounterVec
}

func newFollowMetrics(reg prometheus.Registerer) (*followMetrics, error) {
	m := &followMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "registry_api_followers",
			Help: "Open event streams (kind=stream) and blocked queries (kind=blocking).",
		}, []string{"kind"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "registry_api_followers_rejected_total",
			Help: "Streams and blocking queries refused with 503 beyond REGISTRY_MAX_FOLLOWERS.",
		}),
		wakeups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_follow_wakeups_total",
			Help: "Changes of a followed route table that woke its followers, by cause: data (a new snapshot) or expiry (an instance's TTL ran out).",
		}, []string{"cause"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_stream_events_total",
			Help: "Server-sent events written, by type: snapshot, change, reset.",
		}, []string{"type"}),
		resets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "registry_api_stream_resets_total",
			Help: "Event streams ended by the server, by reason: slow (the client fell behind) or shutdown.",
		}, []string{"reason"}),
	}
	var err error
	if m.open, err = metrics.Register(reg, m.open); err != nil {
		return nil, err
	}
	if m.rejected, err = metrics.Register(reg, m.rejected); err != nil {
		return nil, err
	}
	if m.wakeups, err = metrics.Register(reg, m.wakeups); err != nil {
		return nil, err
	}
	if m.events, err = metrics.Register(reg, m.events); err != nil {
		return nil, err
	}
	if m.resets, err = metrics.Register(reg, m.resets); err != nil {
		return nil, err
	}
	for _, kind := range []string{"blocking", "stream"} {
		m.open.WithLabelValues(kind)
	}
	for _, c := range []string{causeData, causeExpiry} {
		m.wakeups.WithLabelValues(c)
	}
	return m, nil
}
