package main

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

// Shutdown ends event streams and blocked queries cleanly, well before the
// drain deadline: http.Server.Shutdown alone would wait for them until then.
func TestServeEndsFollowersOnShutdown(t *testing.T) {
	cfg := testConfig(t)
	cfg.ShutdownTimeout = 30 * time.Second
	base, stop := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	stream, err := http.Get(base + "/v1/envs/prod/routes/events")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != http.StatusOK || stream.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", stream.StatusCode, stream.Header.Get("Content-Type"))
	}
	events := bufio.NewReader(stream.Body)
	for {
		line, err := events.ReadString('\n')
		if err != nil {
			t.Fatalf("before the snapshot: %v", err)
		}
		if strings.HasPrefix(line, "event: snapshot") {
			break
		}
	}

	routes, err := http.Get(base + "/v1/envs/prod/routes")
	if err != nil {
		t.Fatal(err)
	}
	routes.Body.Close()
	req, _ := http.NewRequest(http.MethodGet, base+"/v1/envs/prod/routes", nil)
	req.Header.Set("If-None-Match", routes.Header.Get("ETag"))
	req.Header.Set("Prefer", "wait=300")
	blocked := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("blocked query: %v", err)
			close(blocked)
			return
		}
		resp.Body.Close()
		blocked <- resp
	}()
	testkit.WaitFor(t, 5*time.Second, "the blocked query is held", func() (bool, string) {
		v := mustMetric(t, base, "registry_api_followers", `kind="blocking"`)
		return v == 1, strconv.FormatFloat(v, 'f', -1, 64)
	})

	began := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(began); took > cfg.ShutdownTimeout/2 {
		t.Errorf("shutdown took %s: the followers held it up", took)
	}
	rest, _ := io.ReadAll(events)
	if !strings.Contains(string(rest), "event: reset") || !strings.Contains(string(rest), `"reason":"shutdown"`) {
		t.Errorf("the stream ended without a shutdown reset: %q", rest)
	}
	if resp := <-blocked; resp != nil && resp.StatusCode != http.StatusNotModified && resp.StatusCode != http.StatusOK {
		t.Errorf("blocked query answered %d on shutdown", resp.StatusCode)
	}
}
