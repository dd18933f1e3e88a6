package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

// These tests send what an attacker inside the cluster would, over a real
// socket to the real server, where timing and connections matter.

// rawRequest opens a connection to base and sends head and then body; the
// connection stays open for the caller to read from or abandon.
func rawRequest(t *testing.T, base, head, body string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, head+body); err != nil {
		t.Fatal(err)
	}
	return conn
}

// problemAnswer reads one answer from conn and decodes its problem.
func problemAnswer(t *testing.T, conn net.Conn, within time.Duration) (*http.Response, map[string]any) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(within)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer within %s: %v", within, err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("answer %d is %q, want application/problem+json", resp.StatusCode, ct)
	}
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("problem body: %v", err)
	}
	return resp, p
}

const stalledHead = "POST /v1/envs/prod/resolve HTTP/1.1\r\nHost: registry-api\r\nContent-Type: application/json\r\n"

func TestServeStalledBodyIsAnsweredAtItsDeadline(t *testing.T) {
	cfg := testConfig(t)
	cfg.BodyReadTimeout = 300 * time.Millisecond
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	for name, send := range map[string]struct{ head, body string }{
		"short of its Content-Length": {stalledHead + "Content-Length: 1000\r\n\r\n", `{"methods"`},
		"chunked, never ending":       {stalledHead + "Transfer-Encoding: chunked\r\n\r\n", "a\r\n{\"methods\"\r\n"},
	} {
		t.Run(name, func(t *testing.T) {
			conn := rawRequest(t, base, send.head, send.body)
			resp, p := problemAnswer(t, conn, 5*time.Second)
			if resp.StatusCode != http.StatusRequestTimeout || p["code"] != "request_timeout" {
				t.Errorf("answer %d %v, want 408 request_timeout", resp.StatusCode, p["code"])
			}
			// The connection is closed: the rest of the body is not waited for.
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := conn.Read(make([]byte, 1)); err == nil {
				t.Errorf("connection still open after the 408 (read %d bytes)", n)
			}
		})
	}
}

func TestServeShedsRequestsBeyondTheInFlightCap(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxInFlight = 2
	cfg.BodyReadTimeout = time.Minute
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	// Two stalled bodies hold both slots until their clients go away.
	held := []net.Conn{
		rawRequest(t, base, stalledHead+"Content-Length: 1000\r\n\r\n", "{"),
		rawRequest(t, base, stalledHead+"Content-Length: 1000\r\n\r\n", "{"),
	}
	testkit.WaitFor(t, 10*time.Second, "both slots taken", func() (bool, string) {
		n := mustMetric(t, base, "registry_api_http_in_flight_requests")
		return n == 2, fmt.Sprintf("%v in flight", n)
	})

	conn := rawRequest(t, base, "GET /v1/envs HTTP/1.1\r\nHost: registry-api\r\n\r\n", "")
	resp, p := problemAnswer(t, conn, 5*time.Second)
	if resp.StatusCode != http.StatusServiceUnavailable || p["code"] != "overloaded" {
		t.Fatalf("answer %d %v, want 503 overloaded", resp.StatusCode, p["code"])
	}
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if got := mustMetric(t, base, "registry_api_http_shed_total"); got != 1 {
		t.Errorf("registry_api_http_shed_total = %v, want 1", got)
	}
	// Probes are never shed: an overloaded replica is not a dead one.
	if status, _, body := writeCall(t, http.MethodGet, base+"/readyz", ""); status != http.StatusOK {
		t.Errorf("/readyz = %d while overloaded: %s", status, body)
	}

	for _, c := range held {
		c.Close()
	}
	testkit.WaitFor(t, 10*time.Second, "a read answered once the slots are free", func() (bool, string) {
		status, _, body := fetch(t, base, "/v1/envs")
		return status == http.StatusOK, string(body)
	})
}

func TestServeRefusesTrailingDataAndChangesNothing(t *testing.T) {
	cfg := testConfig(t)
	cfg.WriteBatchWindow = 0
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)

	const lease = 1795695862709570999
	instances := base + "/v1/envs/prod/apps/stock-service/instances"
	status, _, body := writeCall(t, http.MethodPost, instances, stockRegistration(lease)+" x")
	if status != http.StatusBadRequest || !strings.Contains(string(body), "data after its JSON value") {
		t.Fatalf("register with trailing data = %d: %s", status, body)
	}
	if status, _, body := writeCall(t, http.MethodGet, fmt.Sprintf("%s/%d", instances, lease), ""); status != http.StatusNotFound {
		t.Errorf("the refused registration was stored: look-up = %d: %s", status, body)
	}
}

func TestServeRefusesDeepBodiesCheaply(t *testing.T) {
	logs := &testkit.Buffer{}
	cfg := testConfig(t)
	base, _ := startServe(t, cfg, logs)
	waitReady(t, base)

	deep := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	for _, target := range []string{"/v1/envs/prod/resolve", "/v1/envs/prod/apps/stock-service/instances"} {
		status, hdr, body := writeCall(t, http.MethodPost, base+target, deep)
		if status != http.StatusBadRequest || hdr.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("POST %s with a depth-5000 body = %d %s: %s", target, status, hdr.Get("Content-Type"), body)
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil || p["code"] != "invalid_request" || !strings.Contains(p["detail"].(string), "nests deeper") {
			t.Errorf("POST %s: problem %s", target, body)
		}
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > 2048 {
			t.Errorf("log line of %d bytes: %.300s…", len(line), line)
		}
	}
}
