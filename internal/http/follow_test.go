package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/acme/registry-api/internal/follow"
	"github.com/acme/registry-api/internal/model"
)

// The tests of following run in a synctest bubble: the server's clock and
// timers are the bubble's, so a wait of minutes or a TTL running out takes no
// real time, and synctest.Wait says when every goroutine is blocked.

// followServer is a server on the bubble's clock over src.
func followServer(t *testing.T, src *source, drain <-chan struct{}) *server {
	t.Helper()
	srv, err := newServer(Deps{
		Log:        zerolog.New(io.Discard),
		Snapshots:  src,
		TTL:        10 * time.Second,
		Prometheus: prometheus.NewRegistry(),
		Drain:      drain,
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// serve answers req through the real router and checks it against openapi.yaml.
func serve(t *testing.T, srv *server, target string, header map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, r)
	checkResponse(t, srv, httptest.NewRequest(http.MethodGet, target, nil), rec)
	return rec
}

// blocked is a request served in the background, and when it was answered.
type blocked struct {
	done chan struct{}
	rec  *httptest.ResponseRecorder
	at   time.Time
}

func startBlocked(t *testing.T, srv *server, target, etag string, wait string) *blocked {
	b := &blocked{done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.rec = serve(t, srv, target, map[string]string{"If-None-Match": etag, "Prefer": wait})
		b.at = time.Now()
	}()
	synctest.Wait()
	return b
}

func (b *blocked) answered() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func TestBlockingQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start)...))
		srv := followServer(t, src, nil)
		first := serve(t, srv, "/v1/envs/prod/routes", nil)
		tag := first.Header().Get("ETag")

		b := startBlocked(t, srv, "/v1/envs/prod/routes", tag, "wait=60")
		if b.answered() {
			t.Fatalf("answered at once: %d %s", b.rec.Code, b.rec.Body)
		}
		if got := metricValue(t, srv, "registry_api_followers", "blocking"); got != 1 {
			t.Errorf("blocked queries gauge %v, want 1", got)
		}
		// A heartbeat publishes a snapshot and changes no route: still waiting.
		src.Publish(buildSnapshot(start, fleet(start.Add(time.Second))...))
		synctest.Wait()
		if b.answered() {
			t.Fatalf("a heartbeat woke the query: %d %s", b.rec.Code, b.rec.Body)
		}
		// A registration answers it at once.
		time.Sleep(time.Second)
		registered := append(fleet(start.Add(time.Second)), node{app: "user-service", version: "v2", internal: "user-service:8080", lease: 9, runDate: time.Now(), methods: []string{getUser}})
		src.Publish(buildSnapshot(time.Now(), registered...))
		synctest.Wait()
		if !b.answered() {
			t.Fatal("a registration did not wake the query")
		}
		if b.rec.Code != http.StatusOK || b.rec.Header().Get("ETag") == tag || !b.at.Equal(start.Add(time.Second)) {
			t.Errorf("after the registration: %d, tag %s (held %s), at +%s", b.rec.Code, b.rec.Header().Get("ETag"), tag, b.at.Sub(start))
		}
		if got := b.rec.Header().Get("Preference-Applied"); got != "wait=60" {
			t.Errorf("Preference-Applied %q", got)
		}
		if got := metricValue(t, srv, "registry_api_follow_wakeups_total", "data"); got != 1 {
			t.Errorf("data wake-ups %v, want 1", got)
		}
	})
}

func TestBlockingQueryWakesAtDeathByTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start)...))
		srv := followServer(t, src, nil)
		tag := serve(t, srv, "/v1/envs/prod/routes", nil).Header().Get("ETag")
		resTag := serve(t, srv, "/v1/envs/prod/methods"+getUser, nil).Header().Get("ETag")

		routes := startBlocked(t, srv, "/v1/envs/prod/routes", tag, "wait=300")
		res := startBlocked(t, srv, "/v1/envs/prod/methods"+getUser, resTag, "wait=300")
		// Lease 2 heartbeat a second before start: alive until start+9s
		// inclusive, with no ConfigMap change at all.
		death := start.Add(9*time.Second + time.Nanosecond)
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if routes.answered() || res.answered() {
			t.Fatal("answered before the death")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		for name, b := range map[string]*blocked{"routes": routes, "resolution": res} {
			if !b.answered() {
				t.Fatalf("%s: the death by TTL did not wake it", name)
			}
			if b.rec.Code != http.StatusOK || !b.at.Equal(death) {
				t.Errorf("%s: %d at +%s, want 200 at +%s", name, b.rec.Code, b.at.Sub(start), death.Sub(start))
			}
		}
		var v routeTable
		decode(t, routes.rec, &v)
		if r := v.Routes[1]; r.Method != getUser || r.Targets[0].Instances != 1 {
			t.Errorf("after the death: %+v", r)
		}
		if got := metricValue(t, srv, "registry_api_follow_wakeups_total", "expiry"); got != 1 {
			t.Errorf("expiry wake-ups %v, want 1", got)
		}
	})
}

func TestBlockingQueryTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start.Add(time.Hour))...))
		drain := make(chan struct{})
		srv := followServer(t, src, drain)
		tag := serve(t, srv, "/v1/routes", nil).Header().Get("ETag")

		b := startBlocked(t, srv, "/v1/routes", tag, "wait=5")
		<-b.done
		if b.rec.Code != http.StatusNotModified || !b.at.Equal(start.Add(5*time.Second)) || b.rec.Header().Get("ETag") != tag {
			t.Errorf("wait=5: %d at +%s, tag %s", b.rec.Code, b.at.Sub(start), b.rec.Header().Get("ETag"))
		}
		// The wait is capped, and says so.
		b = startBlocked(t, srv, "/v1/routes", tag, "wait=100000")
		<-b.done
		if got := b.rec.Header().Get("Preference-Applied"); got != "wait=300" || b.at.Sub(start) != 5*time.Second+maxWait {
			t.Errorf("wait=100000: Preference-Applied %q, answered after %s", got, b.at.Sub(start))
		}
		// Draining ends a blocked query at once, with the tag unchanged.
		b = startBlocked(t, srv, "/v1/routes", tag, "wait=60")
		close(drain)
		<-b.done
		if b.rec.Code != http.StatusNotModified || !b.at.Equal(start.Add(5*time.Second+maxWait)) {
			t.Errorf("drain: %d after %s", b.rec.Code, b.at.Sub(start))
		}
		// Without a tag there is nothing to wait for.
		if rec := serve(t, srv, "/v1/routes", map[string]string{"Prefer": "wait=60"}); rec.Code != http.StatusOK {
			t.Errorf("wait without a tag: %d", rec.Code)
		}
	})
}

func TestFollowersAreCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start)...))
		srv, err := newServer(Deps{Log: zerolog.New(io.Discard), Snapshots: src, Prometheus: prometheus.NewRegistry(), MaxFollowers: 1})
		if err != nil {
			t.Fatal(err)
		}
		tag := serve(t, srv, "/v1/envs/prod/routes", nil).Header().Get("ETag")
		b := startBlocked(t, srv, "/v1/envs/prod/routes", tag, "wait=60")
		rec := serve(t, srv, "/v1/envs/prod/routes", map[string]string{"If-None-Match": tag, "Prefer": "wait=60"})
		if rec.Code != http.StatusServiceUnavailable || problemOf(t, rec).Code != model.CodeTooManyFollowers || rec.Header().Get("Retry-After") == "" {
			t.Errorf("beyond the cap: %d %s", rec.Code, rec.Body)
		}
		// Ordinary requests are not counted.
		if rec := serve(t, srv, "/v1/envs/prod/routes", nil); rec.Code != http.StatusOK {
			t.Errorf("a plain read beyond the cap: %d", rec.Code)
		}
		<-b.done
	})
}

func TestLongLived(t *testing.T) {
	for _, tc := range []struct {
		target string
		header map[string]string
		want   bool
	}{
		{"/v1/routes/events", nil, true},
		{"/v1/envs/prod/routes/events", nil, true},
		{"/v1/envs/prod/routes", map[string]string{"If-None-Match": `"x"`, "Prefer": "wait=10"}, true},
		{"/v1/routes", map[string]string{"If-None-Match": `"x"`, "Prefer": "respond-async, wait=10"}, true},
		{"/v1/envs/prod/methods/a.B/C", map[string]string{"If-None-Match": `"x"`, "Prefer": "wait=10"}, true},
		{"/v1/envs/prod/routes", map[string]string{"Prefer": "wait=10"}, false},
		{"/v1/envs/prod/routes", map[string]string{"If-None-Match": `"x"`}, false},
		{"/v1/envs/prod/apps", map[string]string{"If-None-Match": `"x"`, "Prefer": "wait=10"}, false},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		for k, v := range tc.header {
			r.Header.Set(k, v)
		}
		if got := longLived(r); got != tc.want {
			t.Errorf("longLived(%s %v) = %v", tc.target, tc.header, got)
		}
	}
}

// streamWriter is a ResponseWriter for event streams: tests read what was
// flushed so far, and may hold writes back to play a slow client.
type streamWriter struct {
	header http.Header
	mu     sync.Mutex
	buf    bytes.Buffer
	code   int
	gate   chan struct{} // when set, each Write waits for a receive
}

func newStreamWriter() *streamWriter { return &streamWriter{header: http.Header{}} }

func (w *streamWriter) Header() http.Header { return w.header }
func (w *streamWriter) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.code == 0 {
		w.code = code
	}
}
func (w *streamWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	gate := w.gate
	w.mu.Unlock()
	if gate != nil {
		<-gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.buf.Write(p)
}
func (w *streamWriter) Flush() {}

// sse is one parsed server-sent event.
type sse struct {
	typ, id, data string
}

// events parses what the stream wrote so far, comments as type ":".
func (w *streamWriter) events() []sse {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []sse
	var cur sse
	sc := bufio.NewScanner(bytes.NewReader(w.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != (sse{}) {
				out = append(out, cur)
			}
			cur = sse{}
		case strings.HasPrefix(line, ":"):
			out = append(out, sse{typ: ":", data: line})
		case strings.HasPrefix(line, "event: "):
			cur.typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return out
}

func ofType(evs []sse, typ string) []sse {
	var out []sse
	for _, e := range evs {
		if e.typ == typ {
			out = append(out, e)
		}
	}
	return out
}

// openStream serves a stream in the background until ctx's cancel.
func openStream(t *testing.T, srv *server, target string, header map[string]string, w *streamWriter) (stop func(), done chan struct{}) {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	ctx, cancel := contextWithCancel(r)
	done = make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeHTTP(w, r.WithContext(ctx))
	}()
	synctest.Wait()
	return func() { cancel(); <-done }, done
}

func TestEventStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start)...))
		srv := followServer(t, src, nil)
		table := serve(t, srv, "/v1/envs/prod/routes", nil)
		tag := table.Header().Get("ETag")

		w := newStreamWriter()
		stop, _ := openStream(t, srv, "/v1/envs/prod/routes/events", nil, w)
		if w.code != http.StatusOK || w.header.Get("Content-Type") != "text/event-stream" || w.header.Get("X-Accel-Buffering") != "no" {
			t.Fatalf("stream answered %d %v", w.code, w.header)
		}
		evs := w.events()
		snaps := ofType(evs, "snapshot")
		if len(snaps) != 1 || snaps[0].id != tag || snaps[0].data+"\n" != table.Body.String() {
			t.Fatalf("first events %+v, want the table with id %s", evs, tag)
		}

		// A heartbeat sends nothing; a registration sends one change.
		src.Publish(buildSnapshot(start, fleet(start.Add(time.Second))...))
		synctest.Wait()
		if got := ofType(w.events(), "change"); len(got) != 0 {
			t.Errorf("a heartbeat sent %+v", got)
		}
		grown := append(fleet(start), node{app: "order-service", version: "v1", internal: "order-service:9090", lease: 5, runDate: start, methods: []string{"/acme.order.v1.OrderService/Cancel"}})
		src.Publish(buildSnapshot(start, grown...))
		synctest.Wait()
		changes := ofType(w.events(), "change")
		newTag := serve(t, srv, "/v1/envs/prod/routes", nil).Header().Get("ETag")
		if len(changes) != 1 || changes[0].id != newTag {
			t.Fatalf("after a registration: %+v, want one change with id %s", changes, newTag)
		}
		var c routeChangeView
		if err := json.Unmarshal([]byte(changes[0].data), &c); err != nil {
			t.Fatal(err)
		}
		if c.Tag != newTag || len(c.Envs) != 1 || len(c.Envs[0].Added) != 1 || c.Envs[0].Added[0].Method != "/acme.order.v1.OrderService/Cancel" || len(c.Envs[0].Changed)+len(c.Envs[0].Removed) != 0 {
			t.Errorf("change %s", changes[0].data)
		}

		// A death by TTL is a change too, sent when it happens.
		time.Sleep(9*time.Second + time.Nanosecond)
		synctest.Wait()
		changes = ofType(w.events(), "change")
		if len(changes) != 2 || !strings.Contains(changes[1].data, `"changed":[{"method":"/acme.user.v1.UserService/Get"`) {
			t.Errorf("after a death by TTL: %+v", changes)
		}
		checkEventData(t, srv, "/v1/envs/{env}/routes/events", w.events())
		// Idle streams say so every 15 s.
		time.Sleep(pingInterval)
		synctest.Wait()
		if got := ofType(w.events(), ":"); len(got) == 0 {
			t.Error("no ping comment after 15 s")
		}
		// Meanwhile (at +10s) the other instances died too: a third change.
		if got := metricValue(t, srv, "registry_api_stream_events_total", "change"); got != 3 {
			t.Errorf("change events counted %v, want 3", got)
		}
		stop()

		// Reconnecting with the current tag sends no snapshot again; with an
		// old one it does.
		cur := serve(t, srv, "/v1/envs/prod/routes", nil).Header().Get("ETag")
		for last, want := range map[string]int{cur: 0, tag: 1} {
			w := newStreamWriter()
			stop, _ := openStream(t, srv, "/v1/envs/prod/routes/events", map[string]string{"Last-Event-ID": last}, w)
			if got := len(ofType(w.events(), "snapshot")); got != want {
				t.Errorf("Last-Event-ID %s (current %s): %d snapshots, want %d", last, cur, got, want)
			}
			stop()
		}
	})
}

func TestEventStreamAllEnvs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start)...))
		srv := followServer(t, src, nil)
		all := serve(t, srv, "/v1/routes", nil)
		w := newStreamWriter()
		stop, _ := openStream(t, srv, "/v1/routes/events", nil, w)
		defer stop()
		snaps := ofType(w.events(), "snapshot")
		if len(snaps) != 1 || snaps[0].id != all.Header().Get("ETag") || snaps[0].data+"\n" != all.Body.String() {
			t.Fatalf("snapshot %+v", snaps)
		}
		// The env goes away: every route is removed.
		src.Publish(&model.Snapshot{Envs: map[string]*model.EnvIndex{}, NamespaceSyncedAt: map[string]time.Time{"firefly": start}, Namespaces: []string{"firefly"}})
		synctest.Wait()
		changes := ofType(w.events(), "change")
		if len(changes) != 1 || !strings.Contains(changes[0].data, `"removed":["/acme.order.v1.OrderService/Create","/acme.user.v1.UserService/Get","/acme.user.v1.UserService/List"]`) {
			t.Errorf("env removed: %+v", changes)
		}
		checkEventData(t, srv, "/v1/routes/events", w.events())
	})
}

func TestEventStreamResetsSlowConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start)...))
		srv := followServer(t, src, nil)
		w := newStreamWriter()
		_, done := openStream(t, srv, "/v1/envs/prod/routes/events", nil, w)
		// The client stops reading: the next write blocks while the table
		// changes again and again.
		gate := make(chan struct{})
		w.mu.Lock()
		w.gate = gate
		w.mu.Unlock()
		for i := range follow.MaxLag + 2 {
			nodes := append(fleet(start), node{app: "order-service", version: "v1", internal: "order-service:9090", lease: int64(100 + i), runDate: start, methods: []string{"/acme.order.v1.OrderService/Create"}})
			src.Publish(buildSnapshot(start, nodes[:len(nodes)-(i%2)]...))
			synctest.Wait()
		}
		close(gate) // the client reads again
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("the slow stream was not dropped")
		}
		evs := w.events()
		if last := evs[len(evs)-1]; last.typ != "reset" || last.data != `{"reason":"slow"}` || last.id != "" {
			t.Errorf("last event %+v, want a slow reset", last)
		}
		if got := metricValue(t, srv, "registry_api_stream_resets_total", "slow"); got != 1 {
			t.Errorf("slow resets %v, want 1", got)
		}
		if got := metricValue(t, srv, "registry_api_followers", "stream"); got != 0 {
			t.Errorf("open streams %v after the reset", got)
		}
	})
}

func TestEventStreamEndsOnDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start)...))
		drain := make(chan struct{})
		srv := followServer(t, src, drain)
		w := newStreamWriter()
		_, done := openStream(t, srv, "/v1/envs/prod/routes/events", nil, w)
		close(drain)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("draining did not end the stream")
		}
		if evs := w.events(); evs[len(evs)-1].typ != "reset" || evs[len(evs)-1].data != `{"reason":"shutdown"}` {
			t.Errorf("events %+v, want a shutdown reset last", evs)
		}
		if rec := serve(t, srv, "/v1/envs/nowhere/routes/events", nil); rec.Code != http.StatusNotFound {
			t.Errorf("stream of an unknown env: %d", rec.Code)
		}
	})
}

func contextWithCancel(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithCancel(r.Context())
}

// checkEventData validates each event's data against the schema that
// openapi.yaml's x-event-data names for its event type on the stream's
// operation, so the contract of a stream is held to what it sends.
func checkEventData(t *testing.T, srv *server, pattern string, evs []sse) {
	t.Helper()
	op := srv.spec.ops[routeKey{http.MethodGet, pattern}]
	if op == nil {
		t.Fatalf("no operation for GET %s", pattern)
	}
	media := op.route.Operation.Responses.Status(http.StatusOK).Value.Content.Get("text/event-stream")
	refs, ok := media.Extensions["x-event-data"].(map[string]any)
	if !ok {
		t.Fatalf("GET %s declares no x-event-data", pattern)
	}
	for _, e := range evs {
		if e.typ == ":" || e.typ == "reset" {
			continue
		}
		ref, ok := refs[e.typ].(map[string]any)
		if !ok {
			t.Errorf("GET %s: event %q is not declared in x-event-data", pattern, e.typ)
			continue
		}
		name := strings.TrimPrefix(ref["$ref"].(string), "#/components/schemas/")
		schema := srv.spec.doc.Components.Schemas[name]
		if schema == nil {
			t.Fatalf("x-event-data names schema %q, which is not in components", name)
		}
		var v any
		if err := json.Unmarshal([]byte(e.data), &v); err != nil {
			t.Errorf("event %s: data is not JSON: %v", e.typ, err)
			continue
		}
		if err := schema.Value.VisitJSON(v); err != nil {
			t.Errorf("event %s does not match %s: %v", e.typ, name, clip(err.Error(), 500))
		}
	}
}

// metricValue reads one series of the server's metrics: name, with label
// value label when the metric has a label.
func metricValue(t *testing.T, srv *server, name, label string) float64 {
	t.Helper()
	families, err := srv.prometheus.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() != label {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

// The whole routes view's tag is its table's digest, the id its stream
// gives the same table, and equal on two indexes of the same data (two
// replicas).
func TestRoutesTagIsTableDigest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		snap := buildSnapshot(start, fleet(start)...)
		srv := followServer(t, newSource(snap), nil)
		env := serve(t, srv, "/v1/envs/prod/routes", nil).Header().Get("ETag")
		if want := snap.Envs["prod"].Routes(start, 10*time.Second).Digest.Tag(); env != want {
			t.Errorf("env routes tag %s, want the table's digest %s", env, want)
		}
		all := serve(t, srv, "/v1/routes", nil).Header().Get("ETag")
		if want := snap.RoutesDigest(start, 10*time.Second).Tag(); all != want {
			t.Errorf("all routes tag %s, want the digest %s", all, want)
		}
		other := followServer(t, newSource(buildSnapshot(start, fleet(start)...)), nil)
		if got := serve(t, other, "/v1/envs/prod/routes", nil).Header().Get("ETag"); got != env {
			t.Errorf("another index of the same data: tag %s, want %s", got, env)
		}
		for target, tag := range map[string]string{"/v1/envs/prod/routes/events": env, "/v1/routes/events": all} {
			w := newStreamWriter()
			stop, _ := openStream(t, srv, target, nil, w)
			if snaps := ofType(w.events(), "snapshot"); len(snaps) != 1 || snaps[0].id != tag {
				t.Errorf("%s: snapshot %+v, want id %s", target, snaps, tag)
			}
			stop()
		}
	})
}

// A client that reconnects with a tag the replica still remembers (another
// stream keeps the topic followed) gets the change since that tag, not the
// whole table; the tag may come without its quotes.
func TestEventStreamResumesFromARememberedTag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		src := newSource(buildSnapshot(start, fleet(start)...))
		srv := followServer(t, src, nil)
		keeper := newStreamWriter()
		stopKeeper, _ := openStream(t, srv, "/v1/envs/prod/routes/events", nil, keeper)
		defer stopKeeper()
		old := ofType(keeper.events(), "snapshot")[0].id

		registered := append(fleet(start), node{app: "order-service", version: "v1", internal: "order-service:9090", lease: 7, runDate: start, methods: []string{"/acme.order.v1.OrderService/Cancel"}})
		src.Publish(buildSnapshot(start, registered...))
		synctest.Wait()
		cur := serve(t, srv, "/v1/envs/prod/routes", nil).Header().Get("ETag")

		for _, last := range []string{old, strings.Trim(old, `"`)} {
			w := newStreamWriter()
			stop, _ := openStream(t, srv, "/v1/envs/prod/routes/events", map[string]string{"Last-Event-ID": last}, w)
			evs := w.events()
			if len(ofType(evs, "snapshot")) != 0 {
				t.Errorf("Last-Event-ID %s: a snapshot, want only the change", last)
			}
			changes := ofType(evs, "change")
			if len(changes) != 1 || changes[0].id != cur || !strings.Contains(changes[0].data, `"added":[{"method":"/acme.order.v1.OrderService/Cancel"`) {
				t.Errorf("Last-Event-ID %s: changes %+v, want the registration with id %s", last, changes, cur)
			}
			checkEventData(t, srv, "/v1/envs/{env}/routes/events", evs)
			stop()
		}
	})
}
