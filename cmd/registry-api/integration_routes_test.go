//go:build integration

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

// TestIntegrationRouteFeed follows one env's route table on two replicas over
// one API server, as a gateway does: a stream on one, blocked queries on the
// other. A heartbeat changes nothing; a registration, a version change, a
// deregistration and a death by TTL each change the tag, wake both, and leave
// both replicas answering the same tag. A stream reopened with the current
// tag, on the other replica, gets no snapshot.
func TestIntegrationRouteFeed(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-routes-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)

	const (
		login  = "/acme.user.v1.UserService/Login"
		create = "/acme.order.v1.OrderService/Create"
		quote  = "/acme.quote.v1.QuoteService/Get"
		// Long enough for every step before the death; the dying entry is
		// written near its end instead.
		ttl      = time.Minute
		interval = 250 * time.Millisecond
		// A change reaches a follower of the replica that wrote it at once,
		// of the other within its next poll; the rest is slack for a
		// loaded machine.
		prompt = interval + 3*time.Second
	)
	user := newNode("prod", "user-service", "v1", login)
	createConfigMap(t, cs, ns, "ff-registry-prod", entries(user))

	cfg := kubeServeConfig(srv.Kubeconfig, interval, ns)
	cfg.TTL = ttl
	a, _ := startServe(t, cfg, io.Discard)
	b, _ := startServe(t, cfg, io.Discard)
	waitReady(t, a)
	waitReady(t, b)

	tag := sameRoutesTag(t, a, b, "")
	stream := followRoutes(t, a, "")
	if ev := stream.next(t, prompt); ev.typ != "snapshot" || ev.id != tag {
		t.Fatalf("first event %+v, want the snapshot with id %s", ev, tag)
	}

	// step makes one change and checks that it reaches the stream on a and a
	// blocked query on b, with the tag both replicas then answer.
	step := func(name string, within time.Duration, change func()) routeChangeBody {
		t.Helper()
		blocked := blockOnRoutes(t, b, tag)
		change()
		ev := stream.next(t, within)
		if ev.typ != "change" || ev.id == tag {
			t.Fatalf("%s: event %+v, want a change from %s", name, ev, tag)
		}
		var res blockedAnswer
		select {
		case res = <-blocked:
		case <-time.After(within):
			t.Fatalf("%s: the blocked query on the other replica is still waiting after %v", name, within)
		}
		if res.status != http.StatusOK || res.etag != ev.id {
			t.Fatalf("%s: blocked query answered %d with tag %s, want 200 with %s", name, res.status, res.etag, ev.id)
		}
		tag = sameRoutesTag(t, a, b, ev.id)
		var c routeChangeBody
		if err := json.Unmarshal([]byte(ev.data), &c); err != nil || c.Tag != tag || len(c.Envs) != 1 || c.Envs[0].Env != "prod" {
			t.Fatalf("%s: change %s (%v)", name, ev.data, err)
		}
		return c
	}

	t.Run("a heartbeat changes nothing", func(t *testing.T) {
		blocked := blockOnRoutes(t, b, tag)
		beat := user
		beat.runDate = time.Now()
		editConfigMap(t, cs, ns, "ff-registry-prod", func(d map[string]string) { d[beat.key()] = beat.value() })
		waitPolls(t, a, 3, interval)
		waitPolls(t, b, 3, interval)
		if got := sameRoutesTag(t, a, b, tag); got != tag {
			t.Errorf("tag after a heartbeat %s, want %s", got, tag)
		}
		select {
		case res := <-blocked:
			t.Errorf("a heartbeat answered the blocked query: %d %s", res.status, res.etag)
		default:
		}
		if ev, ok := stream.poll(); ok {
			t.Errorf("a heartbeat sent %+v", ev)
		}
	})

	orderLease := strconv.FormatInt(newLease(), 10)
	t.Run("a registration", func(t *testing.T) {
		c := step("registration", prompt, func() {
			body := `{"lease_id":"` + orderLease + `","version":"v1","network":{"internal":"order-service:9090"},"methods":["` + create + `"]}`
			if status, _, answer := writeCall(t, http.MethodPost, a+"/v1/envs/prod/apps/order-service/instances", body); status != http.StatusCreated {
				t.Fatalf("register = %d: %s", status, answer)
			}
		})
		if got := c.Envs[0]; len(got.Added) != 1 || got.Added[0].Method != create || got.Added[0].AppID != "order-service" ||
			len(got.Added[0].Targets) != 1 || got.Added[0].Targets[0].Internal != "order-service:9090" || len(got.Changed)+len(got.Removed) != 0 {
			t.Errorf("registration: %+v", got)
		}
	})

	t.Run("a version change", func(t *testing.T) {
		c := step("version change", prompt, func() {
			body := `{"version":"v2","network":{"internal":"user-service:8080"},"methods":["` + login + `"]}`
			if status, _, answer := writeCall(t, http.MethodPost, b+"/v1/envs/prod/apps/user-service/instances", body); status != http.StatusCreated {
				t.Fatalf("register v2 = %d: %s", status, answer)
			}
		})
		got := c.Envs[0]
		if len(got.Changed) != 1 || got.Changed[0].Method != login || len(got.Changed[0].Targets) != 1 ||
			strings.Join(got.Changed[0].Targets[0].Versions, ",") != "v1,v2" || got.Changed[0].Targets[0].Instances != 2 {
			t.Errorf("version change: %+v", got)
		}
	})

	t.Run("a reconnect with the current tag on the other replica gets no snapshot", func(t *testing.T) {
		resumed := followRoutes(t, b, tag)
		c := step("deregistration", prompt, func() {
			if status, _, answer := writeCall(t, http.MethodDelete, a+"/v1/envs/prod/apps/order-service/instances/"+orderLease, ""); status != http.StatusNoContent {
				t.Fatalf("deregister = %d: %s", status, answer)
			}
		})
		if got := c.Envs[0]; len(got.Removed) != 1 || got.Removed[0] != create || len(got.Added)+len(got.Changed) != 0 {
			t.Errorf("deregistration: %+v", got)
		}
		if ev := resumed.next(t, prompt); ev.typ != "change" || ev.id != tag {
			t.Errorf("the resumed stream's first event %+v, want the deregistration's change %s and no snapshot", ev, tag)
		}
	})

	t.Run("a death by TTL", func(t *testing.T) {
		// Written so that it is alive for a few seconds more, then dies with
		// no ConfigMap change at all.
		dying := newNode("prod", "quote-service", "v1", quote)
		dying.runDate = time.Now().Add(-ttl + 4*time.Second)
		step("a short-lived registration", prompt, func() {
			editConfigMap(t, cs, ns, "ff-registry-prod", func(d map[string]string) { d[dying.key()] = dying.value() })
		})
		// run_date has whole seconds: the entry dies within a second of this.
		diesAt := dying.runDate.Truncate(time.Second).Add(ttl)
		c := step("death by TTL", time.Until(diesAt)+prompt, func() {})
		if late := time.Since(diesAt); late > prompt {
			t.Errorf("the death reached the followers %v after it happened", late)
		}
		got := c.Envs[0]
		if len(got.Changed) != 1 || got.Changed[0].Method != quote || len(got.Changed[0].Targets) != 0 {
			t.Errorf("death by TTL: %+v, want %s kept with no targets", got, quote)
		}
	})
}

type routeChangeBody struct {
	Tag  string `json:"tag"`
	Envs []struct {
		Env     string      `json:"env"`
		Added   []routeBody `json:"added"`
		Changed []routeBody `json:"changed"`
		Removed []string    `json:"removed"`
	} `json:"envs"`
}

type routeBody struct {
	Method  string `json:"method"`
	AppID   string `json:"app_id"`
	Targets []struct {
		Internal  string   `json:"internal"`
		Versions  []string `json:"versions"`
		Instances int      `json:"instances"`
	} `json:"targets"`
}

// sameRoutesTag waits until both replicas answer the same tag for the env's
// routes, and want if it is set, and returns it.
func sameRoutesTag(t *testing.T, a, b, want string) string {
	t.Helper()
	var tag string
	testkit.WaitFor(t, 5*time.Second, "both replicas answer the same routes tag", func() (bool, string) {
		_, ha, _ := fetch(t, a, "/v1/envs/prod/routes")
		_, hb, _ := fetch(t, b, "/v1/envs/prod/routes")
		tag = ha.Get("ETag")
		return tag != "" && tag == hb.Get("ETag") && (want == "" || tag == want), tag + " / " + hb.Get("ETag")
	})
	return tag
}

type blockedAnswer struct {
	status int
	etag   string
}

// blockOnRoutes starts a blocked query for the env's routes past tag, and
// returns once the replica holds it.
func blockOnRoutes(t *testing.T, base, tag string) <-chan blockedAnswer {
	t.Helper()
	before := mustMetric(t, base, "registry_api_followers", `kind="blocking"`)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/envs/prod/routes", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("If-None-Match", tag)
	req.Header.Set("Prefer", "wait=60")
	out := make(chan blockedAnswer, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if t.Context().Err() == nil {
				t.Errorf("blocked query: %v", err)
			}
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		out <- blockedAnswer{status: resp.StatusCode, etag: resp.Header.Get("ETag")}
	}()
	var held float64
	testkit.WaitFor(t, 5*time.Second, "the replica holds the blocked query", func() (bool, string) {
		held = mustMetric(t, base, "registry_api_followers", `kind="blocking"`)
		return held > before, strconv.FormatFloat(held, 'f', -1, 64)
	})
	// A query still waiting when its test ends is canceled with t's context
	// before this runs: wait until the replica lets it go, so that the next
	// test counts the replica's blocked queries without it.
	t.Cleanup(func() {
		testkit.WaitFor(t, 5*time.Second, "the replica letting the blocked query go", func() (bool, string) {
			v := mustMetric(t, base, "registry_api_followers", `kind="blocking"`)
			return v < held, strconv.FormatFloat(v, 'f', -1, 64)
		})
	})
	return out
}

type streamEvent struct {
	typ, id, data string
}

// routeStream reads one event stream in the background.
type routeStream struct {
	events chan streamEvent
}

// followRoutes opens the env's route event stream, with Last-Event-ID if
// lastID is set, until the test ends.
func followRoutes(t *testing.T, base, lastID string) *routeStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/envs/prod/routes/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &routeStream{events: make(chan streamEvent, 64)}
	go func() {
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 4<<20)
		var cur streamEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.typ != "" {
					s.events <- cur
				}
				cur = streamEvent{}
			case strings.HasPrefix(line, "event: "):
				cur.typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				cur.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

// next is the stream's next event, comments aside.
func (s *routeStream) next(t *testing.T, timeout time.Duration) streamEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
	}
	return streamEvent{}
}

// poll is an event the stream has already sent, if any.
func (s *routeStream) poll() (streamEvent, bool) {
	select {
	case ev, ok := <-s.events:
		return ev, ok
	default:
		return streamEvent{}, false
	}
}
