package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/acme/registry-api/internal/model"
)

// Event streams (Server-Sent Events) of the route table. A stream keeps the
// tables it last sent and, on each change of its topic, sends what differs:
// changes that pile up while a write is slow are folded into one event, so a
// stream holds at most one table per env whatever its client's pace. A
// client so slow that its topic moved on by more than maxStreamLag changes
// during one write is sent a reset and dropped.

const (
	// keepaliveInterval is how often an idle stream writes a comment, so
	// that proxies keep the connection open.
	keepaliveInterval = 15 * time.Second
	// streamWriteTimeout bounds each event's write; a client that takes
	// longer is gone.
	streamWriteTimeout = 10 * time.Second
	// maxStreamLag is how many changes a stream may fall behind by.
	maxStreamLag = 64
	// reconnectMillis is the SSE retry a client is told to wait.
	reconnectMillis = 1000
)

var (
	ctEventStream = []string{"text/event-stream"}
	noBuffering   = []string{"no"}
	noStore       = []string{"no-store"}
)

type routeChangeView struct {
	Tag  string          `json:"tag"`
	Envs []envChangeView `json:"envs"`
}

type envChangeView struct {
	Env     string      `json:"env"`
	Added   []routeView `json:"added"`
	Changed []routeView `json:"changed"`
	Removed []string    `json:"removed"`
}

func newEnvChangeView(c *model.RouteChanges) envChangeView {
	v := envChangeView{Env: c.Env, Added: make([]routeView, len(c.Added)), Changed: make([]routeView, len(c.Changed)), Removed: nonNil(c.Removed)}
	for i := range c.Added {
		v.Added[i] = newRouteView(&c.Added[i])
	}
	for i := range c.Changed {
		v.Changed[i] = newRouteView(&c.Changed[i])
	}
	return v
}

// streamView is what one stream follows: one env, or every env (env == "").
type streamView struct {
	env string
	ttl time.Duration
}

func (v streamView) key() string {
	if v.env == "" {
		return allEnvs
	}
	return v.env
}

// render is the view's snapshot event body and tag at now.
func (v streamView) render(snap *model.Snapshot, now time.Time) (*model.Rendered, error) {
	if v.env == "" {
		return renderAllRoutes(snap, now, v.ttl)
	}
	env := snap.Envs[v.env]
	if env == nil {
		// A followed env that went away is an empty table.
		return encodeRoutes(&model.RouteTable{Env: v.env}, routeFilter{})
	}
	return renderRoutes(env, routeFilter{}, now, v.ttl)
}

// tables are the view's tables at now, by env.
func (v streamView) tables(snap *model.Snapshot, now time.Time) map[string]*model.RouteTable {
	out := make(map[string]*model.RouteTable)
	if v.env != "" {
		if env := snap.Envs[v.env]; env != nil {
			out[v.env] = env.Routes(now, v.ttl).Table
		}
		return out
	}
	for name, env := range snap.Envs {
		out[name] = env.Routes(now, v.ttl).Table
	}
	return out
}

// changes lists what differs between two views' tables, by env.
func (v streamView) changes(old, cur map[string]*model.RouteTable) []envChangeView {
	names := make([]string, 0, len(old)+len(cur))
	for name := range old {
		names = append(names, name)
	}
	for name := range cur {
		if _, ok := old[name]; !ok {
			names = append(names, name)
		}
	}
	if v.env != "" && len(names) == 0 {
		names = append(names, v.env)
	}
	slices.Sort(names)
	out := []envChangeView{}
	for _, name := range names {
		c := model.DiffRoutes(name, old[name], cur[name])
		if !c.Empty() {
			out = append(out, newEnvChangeView(&c))
		}
	}
	return out
}

// writeStreamHeaders starts an event stream's answer: unbuffered by
// proxies (X-Accel-Buffering) and never cached.
func writeStreamHeaders(w http.ResponseWriter) {
	h := w.Header()
	h[hdrContentType] = ctEventStream
	h[hdrCacheControl] = noStore
	h["X-Accel-Buffering"] = noBuffering
	h[hdrNoSniff] = noSniff
	w.WriteHeader(http.StatusOK)
}

// handleRouteEvents serves GET /v1/envs/{env}/routes/events and, with
// all set, GET /v1/routes/events.
func handleRouteEvents(live liveness, fl *follower, all bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := streamView{ttl: live.ttl}
		if !all {
			v.env = pathParam(r, "env")
			if _, err := lookupEnv(w, current(fl.src), v.env); err != nil {
				writeProblem(w, r, err)
				return
			}
		}
		if r.Method == http.MethodHead {
			// A stream's headers, and no stream: HEAD answers at once.
			writeStreamHeaders(w)
			return
		}
		release, err := fl.admit("stream")
		if err != nil {
			w.Header()[hdrRetryAfter] = retryFollowAfter
			writeProblem(w, r, err)
			return
		}
		defer release()
		unsubscribe := fl.subscribe(v.key())
		defer unsubscribe()
		s := &stream{w: w, rc: http.NewResponseController(w), m: fl.m}

		st := fl.state(v.key())
		out, err := v.render(st.snap, st.at)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		writeStreamHeaders(w)
		tag := out.ETag[0]
		fmt.Fprintf(&s.buf, "retry: %d\n\n", reconnectMillis)
		if r.Header.Get("Last-Event-ID") != tag {
			s.event("snapshot", tag, bytes.TrimSuffix(out.Body, []byte("\n")))
		}
		if s.flush() != nil {
			return
		}
		tables := v.tables(st.snap, st.at)
		gen := st.gen

		keepalive := time.NewTicker(keepaliveInterval)
		defer keepalive.Stop()
		for {
			select {
			case <-st.changed:
				st = fl.state(v.key())
				if st.gen-gen > maxStreamLag {
					fl.m.resets.WithLabelValues("slow").Inc()
					s.reset("slow")
					return
				}
				gen = st.gen
				out, err := v.render(st.snap, st.at)
				if err != nil || out.ETag[0] == tag {
					continue
				}
				cur := v.tables(st.snap, st.at)
				body, err := marshal(routeChangeView{Tag: out.ETag[0], Envs: v.changes(tables, cur)})
				if err != nil {
					continue // only a bug: the next change carries the difference
				}
				tables, tag = cur, out.ETag[0]
				s.event("change", tag, bytes.TrimSuffix(body, []byte("\n")))
			case <-keepalive.C:
				s.buf.WriteString(": keepalive\n\n")
			case <-fl.drain:
				fl.m.resets.WithLabelValues("shutdown").Inc()
				s.reset("shutdown")
				return
			case <-r.Context().Done():
				return
			}
			if s.flush() != nil {
				return
			}
		}
	}
}

// stream writes a Server-Sent Events response.
type stream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	m   *followMetrics
	buf bytes.Buffer
}

// event queues one event; data must hold no newline (compact JSON has none).
func (s *stream) event(typ, id string, data []byte) {
	s.buf.WriteString("event: ")
	s.buf.WriteString(typ)
	// An empty id would clear the client's last event id: omit it instead.
	if id != "" {
		s.buf.WriteString("\nid: ")
		s.buf.WriteString(id)
	}
	s.buf.WriteString("\ndata: ")
	s.buf.Write(data)
	s.buf.WriteString("\n\n")
	s.m.events.WithLabelValues(typ).Inc()
}

// reset tells the client the server ends the stream, and why.
func (s *stream) reset(reason string) {
	s.event("reset", "", []byte(`{"reason":"`+reason+`"}`))
	_ = s.flush()
}

// flush writes what is queued within streamWriteTimeout.
func (s *stream) flush() error {
	if s.buf.Len() == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err == nil {
		err = s.rc.Flush()
	}
	return err
}
