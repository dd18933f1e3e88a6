package httpapi

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/metrics"
	"github.com/acme/registry-api/internal/model"
)

// A gateway asks the same small questions over and over: one method's
// resolution, its app's routes, the routes of an app that has not registered
// yet. Until the snapshot changes or one of the env's alive instances dies
// by its TTL, such a request target has one answer, status, headers and body
// alike. The first request for a target is routed, validated and answered as
// any other, and its answer is kept; a repeat is written from what was kept,
// skipping routing, validation and the handler, which judged the same target
// already. The request log, the metrics and admission still see every
// request.
//
// Kept only where nothing but the target decides the answer: GET, served
// without read authentication, on the routes in answerRoutes, carrying none
// of the headers their operations read (If-None-Match, Prefer: those go the
// whole way), and only 200 answers. The representation a client accepts
// (Accept-Encoding) keeps its own answer.

// answerRoutes are the routes whose answers are kept.
var answerRoutes = map[string]bool{
	"/v1/envs/{env}/methods/*": true,
	"/v1/envs/{env}/routes":    true,
}

// Bounds of what one snapshot keeps: targets are the client's to choose, so
// that a scan of made-up names cannot grow memory.
const (
	maxAnswers      = 4096
	maxAnswerBody   = 64 << 10
	maxAnswersBytes = 16 << 20
)

// answers keeps the answers of the current snapshot.
type answers struct {
	src model.SnapshotSource
	// metrics resolves the series a kept answer is counted under.
	metrics *httpMetrics
	now     func() time.Time
	ttl     time.Duration
	// reads are the request headers that the kept routes' operations read:
	// a request carrying one is answered afresh.
	reads []string
	cur   atomic.Pointer[answerSet]
	// replayed counts requests answered from what was kept.
	replayed prometheus.Counter
}

// answerSet is what one snapshot keeps, by request target.
type answerSet struct {
	snap *model.Snapshot
	// plain and gzip are for clients that do not and do accept gzip.
	plain, gzip  sync.Map
	count, bytes atomic.Int64
}

// answer is one kept answer: status 200, its headers and body.
type answer struct {
	pattern string
	// get and head are the route's series for GET and HEAD.
	get, head *routeMetrics
	header    []headerField
	body      []byte
	// from is when it was rendered, and until when the first of the env's
	// instances then alive dies (zero when none was): it holds in between.
	// A clock set back before from could see the dead alive again.
	from, until time.Time
}

// holds reports whether kept is the answer at now.
func (kept *answer) holds(now time.Time) bool {
	return !now.Before(kept.from) && (kept.until.IsZero() || now.Before(kept.until))
}

func (a *answers) serve(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec, ok := w.(*recorder)
		if !ok || !a.keeps(r) {
			next.ServeHTTP(w, r)
			return
		}
		// The target in origin form (keeps): path and query, which
		// checkTarget bounds, and nothing else of the request.
		target := r.RequestURI
		gzip := len(r.Header[hdrAcceptEncoding]) > 0 && acceptsGzip(r)
		snap := current(a.src)
		set := a.cur.Load()
		var stale *answer
		if set != nil && set.snap == snap {
			if v, ok := set.of(gzip).Load(target); ok {
				kept := v.(*answer)
				if kept.holds(a.now()) {
					rec.pattern, rec.metrics = kept.pattern, kept.get
					if r.Method == http.MethodHead {
						rec.metrics = kept.head
					}
					kept.write(w, r)
					a.replayed.Inc()
					return
				}
				stale = kept
			}
		}
		if r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		if set == nil || set.snap != snap {
			if current(a.src) != snap {
				// Read before a newer snapshot: its set is not ours to
				// replace.
				next.ServeHTTP(w, r)
				return
			}
			set = a.renew(set, snap)
		}
		if set.snap != snap || (stale == nil && set.count.Load() >= maxAnswers) {
			// Another snapshot's set, or a full one: answered, not kept.
			next.ServeHTTP(w, r)
			return
		}
		// Read before the handler reads the snapshot: an answer of a newer
		// snapshot is kept under this older one, never served; an instance
		// that dies meanwhile has already passed until.
		now := a.now()
		c := &capture{}
		rec.capture = c
		next.ServeHTTP(w, r)
		rec.capture = nil
		if !answerRoutes[rec.pattern] || c.status != http.StatusOK || c.tooBig {
			return
		}
		env := snap.Envs[rec.routed.PathValue("env")]
		if env == nil {
			return
		}
		kept := &answer{pattern: rec.pattern, header: c.header, body: c.body, from: now, until: env.NextExpiry(now, a.ttl),
			get: a.metrics.forRoute(http.MethodGet, rec.pattern), head: a.metrics.forRoute(http.MethodHead, rec.pattern)}
		size := kept.size(target)
		if set.bytes.Load()+size > maxAnswersBytes {
			return
		}
		m := set.of(gzip)
		if stale != nil {
			// An expired answer gives way to the fresh one in its place.
			if m.CompareAndSwap(target, stale, kept) {
				set.bytes.Add(size - stale.size(target))
			}
			return
		}
		if _, loaded := m.LoadOrStore(target, kept); !loaded {
			set.count.Add(1)
			set.bytes.Add(size)
		}
	})
}

// keeps reports whether r may be answered from a kept answer, or its answer
// kept: a GET or HEAD in origin form whose path may be a kept route's (the
// route itself is known once routed), carrying no header those routes read.
// Event streams, exports and the rest go by without being looked at.
func (a *answers) keeps(r *http.Request) bool {
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || !strings.HasPrefix(r.RequestURI, "/") {
		return false
	}
	p := r.URL.Path
	if !strings.HasPrefix(p, "/v1/envs/") || !(strings.HasSuffix(p, "/routes") || strings.Contains(p, "/methods/")) {
		return false
	}
	for _, h := range a.reads {
		if len(r.Header[h]) > 0 {
			return false
		}
	}
	return true
}

// size is what kept holds under target, counted against maxAnswersBytes.
func (kept *answer) size(target string) int64 {
	n := len(target) + len(kept.body)
	for _, f := range kept.header {
		n += len(f.name)
		for _, v := range f.values {
			n += len(v)
		}
	}
	return int64(n)
}

// renew replaces old, kept for an older snapshot, by an empty set for snap.
func (a *answers) renew(old *answerSet, snap *model.Snapshot) *answerSet {
	fresh := &answerSet{snap: snap}
	if a.cur.CompareAndSwap(old, fresh) {
		return fresh
	}
	// Another request renewed it first; its set may be for snap.
	return a.cur.Load()
}

func (s *answerSet) of(gzip bool) *sync.Map {
	if gzip {
		return &s.gzip
	}
	return &s.plain
}

func (kept *answer) write(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for _, f := range kept.header {
		h[f.name] = f.values
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(kept.body)
	}
}

// capture remembers an answer as observe's recorder passes it on: its
// status, its headers as they were sent and its body, up to maxAnswerBody.
type capture struct {
	status int
	header []headerField
	body   []byte
	tooBig bool
}

// headerField is a header as an answer sent it.
type headerField struct {
	name   string
	values []string
}

func (c *capture) writeHeader(status int, h http.Header) {
	c.status = status
	// The values are shared: a header's values are not changed once sent.
	for _, name := range slices.Sorted(maps.Keys(h)) {
		c.header = append(c.header, headerField{name, h[name]})
	}
}

func (c *capture) write(b []byte) {
	if c.tooBig {
		return
	}
	if len(c.body)+len(b) > maxAnswerBody {
		c.tooBig, c.body = true, nil
		return
	}
	c.body = append(c.body, b...)
}

func newAnswerMetrics(reg prometheus.Registerer) (prometheus.Counter, error) {
	return metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "registry_api_http_answers_replayed_total",
		Help: "Requests answered from the kept answer of the same request target in the current snapshot, without routing or rendering.",
	}))
}
