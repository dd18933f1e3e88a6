package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/follow"
	"github.com/acme/registry-api/internal/metrics"
	"github.com/acme/registry-api/internal/model"
)

// Following the registry: blocking queries (If-None-Match + Prefer: wait=N)
// and event streams, the responders over internal/follow. Both wait on a
// topic's head, which the hub moves on when the topic's route table changes:
// on a published snapshot that changes it, or at the instant a node's TTL
// runs out. An idle follower costs a parked goroutine and nothing per change
// of other envs' data.

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

// following is what the responders of followers share: the hub that
// judges topics, the server's drain and the stream metrics.
type following struct {
	hub   *follow.Hub
	src   model.SnapshotSource
	live  liveness
	drain <-chan struct{}
	m     *streamMetrics
}

// join subscribes a follower of kind to key, or writes the refusal beyond
// the cap and returns nil.
func (fl *following) join(w http.ResponseWriter, r *http.Request, key, kind string) *follow.Follower {
	f, err := fl.hub.Follow(key, kind)
	if err != nil {
		writeProblem(w, r, model.Errorf(model.CodeTooManyFollowers, "this replica already serves %d streams and blocked queries; retry, or ask another replica", fl.hub.MaxFollowers()))
		return nil
	}
	return f
}

// serveBlocking answers a view rendered by render, waiting first when the
// request holds a tag (If-None-Match) and asks to wait (Prefer: wait=N): the
// answer comes once the view's tag differs, or as 304 when the wait runs
// out or the server drains. A compressible view (a route table) goes
// gzip-compressed to a client that accepts it.
func (fl *following) serveBlocking(w http.ResponseWriter, r *http.Request, key string, compressible bool, render func(*model.Snapshot, time.Time) (*rendered, error)) {
	inm := r.Header[hdrIfNoneMatch]
	wait := preferredWait(r)
	if len(inm) == 0 || wait <= 0 {
		out, err := render(current(fl.src), fl.live.now())
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeRendered(w, r, ctJSON, out, compressible)
		return
	}
	if r.URL.Query().Has("version") {
		key = follow.EveryChange
	}
	f := fl.join(w, r, key, "blocking")
	if f == nil {
		return
	}
	defer f.Close()
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + writeSlack))
	w.Header()[hdrPreferenceApplied] = []string{"wait=" + strconv.FormatInt(int64(wait/time.Second), 10)}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		head := f.Head()
		out, err := render(head.Snap, head.At)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		if !etagMatches(inm, representedTag(r, out, compressible)) {
			writeRendered(w, r, ctJSON, out, compressible)
			return
		}
		select {
		case <-head.Changed:
			continue
		case <-timer.C:
		case <-fl.drain:
		case <-r.Context().Done():
			return
		}
		writeRendered(w, r, ctJSON, out, compressible) // a 304: the tag matches
		return
	}
}

// streamMetrics count what event streams write.
type streamMetrics struct {
	events *prometheus.CounterVec
	resets *prometheus.CounterVec
}

func newStreamMetrics(reg prometheus.Registerer) (*streamMetrics, error) {
	m := &streamMetrics{
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
	if m.events, err = metrics.Register(reg, m.events); err != nil {
		return nil, err
	}
	if m.resets, err = metrics.Register(reg, m.resets); err != nil {
		return nil, err
	}
	return m, nil
}
