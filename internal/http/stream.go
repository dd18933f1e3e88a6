package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/acme/registry-api/internal/follow"
	"github.com/acme/registry-api/internal/model"
)

// Event streams (Server-Sent Events) of the route table. A stream remembers
// the revision it last sent (internal/follow) and, when its topic moves on,
// writes the change from it to the head: the event is encoded once per
// change and shared by every stream that sends it, and changes that pile up
// while a write is slow fold into one event. A client so slow that its topic
// moved on by more than follow.MaxLag revisions during one write is sent a
// reset and dropped.

const (
	// pingInterval is how often an idle stream writes a comment, so
	// that proxies keep the connection open.
	pingInterval = 15 * time.Second
	// streamWriteTimeout bounds each event's write; a client that takes
	// longer is gone.
	streamWriteTimeout = 10 * time.Second
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

// encodeChangeEvent renders a change as the whole event that carries it,
// once per change (follow.Change.Event): every stream at that revision writes
// the same bytes.
func encodeChangeEvent(c *follow.Change) ([]byte, error) {
	v := routeChangeView{Tag: c.Tag, Envs: make([]envChangeView, len(c.Envs))}
	for i := range c.Envs {
		v.Envs[i] = newEnvChangeView(&c.Envs[i])
	}
	data, err := marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode route change %s: %w", c.Tag, err)
	}
	var buf bytes.Buffer
	buf.Grow(len(data) + len(c.Tag) + 32)
	writeEventHead(&buf, "change", c.Tag)
	buf.Write(bytes.TrimSuffix(data, []byte("\n")))
	buf.WriteString("\n\n")
	return buf.Bytes(), nil
}

// writeEventHead writes an event's lines up to its data; an empty id is left
// out, since it would clear the client's last event id.
func writeEventHead(buf *bytes.Buffer, typ, id string) {
	buf.WriteString("event: ")
	buf.WriteString(typ)
	if id != "" {
		buf.WriteString("\nid: ")
		buf.WriteString(id)
	}
	buf.WriteString("\ndata: ")
}

// renderTopic is the snapshot event's body of topic key as head judged it.
func renderTopic(key string, head follow.Head, ttl time.Duration) (*rendered, error) {
	if key == follow.AllEnvs {
		return renderAllRoutes(head.Snap, head.At, ttl)
	}
	env := head.Snap.Envs[key]
	if env == nil {
		// A followed env that went away is an empty table.
		return encodeRoutes(&model.RouteTable{Env: key}, routeFilter{})
	}
	return renderRoutes(env, routeFilter{}, head.At, ttl)
}

// lastEventID is the tag a reconnecting client holds, quoted as tags are;
// the quotes may be left off.
func lastEventID(r *http.Request) string {
	id := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if id == "" || strings.HasPrefix(id, `"`) {
		return id
	}
	return `"` + id + `"`
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
func handleRouteEvents(fl *following, all bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := follow.AllEnvs
		if !all {
			key = pathParam(r, "env")
			if _, err := lookupEnv(w, current(fl.src), key); err != nil {
				writeProblem(w, r, err)
				return
			}
		}
		if r.Method == http.MethodHead {
			// A stream's headers, and no stream: HEAD answers at once.
			writeStreamHeaders(w)
			return
		}
		f := fl.join(w, r, key, "stream")
		if f == nil {
			return
		}
		defer f.Close()

		// Found before the head is read: a remembered revision is then never
		// newer than the head.
		from := f.Find(lastEventID(r))
		head := f.Head()
		var first *rendered
		if from == nil {
			// A tag this replica does not remember gets the whole table.
			out, err := renderTopic(key, head, fl.live.ttl)
			if err != nil {
				writeProblem(w, r, err)
				return
			}
			first = out
		}
		writeStreamHeaders(w)
		s := &stream{w: w, rc: http.NewResponseController(w), m: fl.m}
		s.buf = append(s.buf, retryLine...)
		switch {
		case first != nil:
			s.snapshot(head.Tag, first.Body)
		case from != head.Revision && from.Tag != head.Tag:
			if !s.change(from, head.Revision) {
				return
			}
		}
		if s.flush() != nil {
			return
		}
		sent := head.Revision

		ping := time.NewTicker(pingInterval)
		defer ping.Stop()
		for {
			select {
			case <-head.Changed:
				head = f.Head()
				if !s.change(sent, head.Revision) {
					return
				}
				sent = head.Revision
			case <-ping.C:
				s.buf = append(s.buf, pingComment...)
			case <-fl.drain:
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

var (
	retryLine   = []byte("retry: " + strconv.Itoa(reconnectMillis) + "\n\n")
	pingComment = []byte(": ping\n\n")
)

// stream writes a Server-Sent Events response. It holds no copy of what it
// writes: an event's bytes are the shared rendering of a snapshot or a
// change, written straight to the connection; buf gathers only the few
// bytes of lines of its own.
type stream struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	m   *streamMetrics
	buf []byte
	// shared is the rendering queued after buf; nil when none.
	shared [][]byte
}

// snapshot queues the snapshot event: body is the shared rendering of the
// table, ending in a newline, which the event's own blank line replaces.
func (s *stream) snapshot(tag string, body []byte) {
	var head bytes.Buffer
	writeEventHead(&head, "snapshot", tag)
	s.queue(head.Bytes(), bytes.TrimSuffix(body, []byte("\n")), []byte("\n\n"))
	s.m.events.WithLabelValues("snapshot").Inc()
}

// change queues the change from revision from to revision to; false when
// the stream fell too far behind and was reset.
func (s *stream) change(from, to *follow.Revision) bool {
	c, err := follow.Since(from, to)
	if err != nil {
		s.reset("slow")
		return false
	}
	ev, err := c.Event(encodeChangeEvent)
	if err != nil {
		return true // only a bug: the next change carries the difference
	}
	s.queue(ev)
	s.m.events.WithLabelValues("change").Inc()
	return true
}

// queue adds shared bytes after what is queued.
func (s *stream) queue(parts ...[]byte) {
	if len(s.buf) > 0 {
		s.shared = append(s.shared, s.buf)
		s.buf = nil
	}
	s.shared = append(s.shared, parts...)
}

// reset tells the client the server ends the stream, and why.
func (s *stream) reset(reason string) {
	s.m.resets.WithLabelValues(reason).Inc()
	var ev bytes.Buffer
	writeEventHead(&ev, "reset", "")
	ev.WriteString(`{"reason":"` + reason + `"}` + "\n\n")
	s.queue(ev.Bytes())
	s.m.events.WithLabelValues("reset").Inc()
	_ = s.flush()
}

// flush writes what is queued within streamWriteTimeout.
func (s *stream) flush() error {
	if len(s.buf) == 0 && len(s.shared) == 0 {
		return nil
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	var err error
	for _, p := range s.shared {
		if _, err = s.w.Write(p); err != nil {
			break
		}
	}
	if err == nil && len(s.buf) > 0 {
		_, err = s.w.Write(s.buf)
	}
	clear(s.shared)
	s.shared, s.buf = s.shared[:0], s.buf[:0]
	if err == nil {
		err = s.rc.Flush()
	}
	return err
}
