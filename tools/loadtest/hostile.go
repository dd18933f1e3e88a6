package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/acme/registry-api/internal/follow"
)

// runHostile serves the 10,000-instance seed from the real binary with the
// deployment's memory limit as GOMEMLIMIT, and sends it every kind of
// hostile request at once, from inside the cluster's network
// (reads need no token): deeply nested, oversized and trailing-data bodies,
// bodies that stall, oversized query strings, and more connections than the
// in-flight cap. Meanwhile one client resolves a method as a gateway would.
// It reports the server's peak resident memory, what each kind was
// answered, and how the honest client fared. The deployment's memory limit
// is chosen from its result (BENCHMARKS.md, "Memory under hostile load").
func runHostile(bin, memLimit string, d time.Duration, stallers int) error {
	// Every refused request is logged, as in a cluster: a pipe that is read.
	var logBytes, logLines, longestLine atomic.Int64
	logs, logWriter := io.Pipe()
	go func() {
		sc := bufio.NewScanner(logs)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			n := int64(len(sc.Bytes()))
			logBytes.Add(n + 1)
			logLines.Add(1)
			if n > longestLine.Load() {
				longestLine.Store(n)
			}
		}
		_, _ = io.Copy(io.Discard, logs)
	}()
	defer logWriter.Close()
	reg, err := startRegistry(bin, logWriter, "REGISTRY_SEED_KEEPALIVE=true", "REGISTRY_AUTH=none", "GOMEMLIMIT="+memLimit)
	if err != nil {
		return err
	}
	defer reg.stop()
	base, addr := reg.base, strings.TrimPrefix(reg.base, "http://")
	pid := reg.cmd.Process.Pid
	idle, err := rssKiB(pid, "VmRSS")
	if err != nil {
		return err
	}

	resolve := "/v1/envs/env-07/resolve"
	methods := `{"methods":["/acme.app3.v1.Service/M5"]}`
	kinds := []hostileKind{
		{name: "nesting depth 5000 (30 KB)", method: http.MethodPost, path: resolve,
			body: []byte(strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000))},
		{name: "nesting depth 9000 (54 KB)", method: http.MethodPost, path: resolve,
			body: []byte(strings.Repeat(`[`, 9000) + strings.Repeat("]", 9000))},
		{name: "trailing data", method: http.MethodPost, path: resolve, body: []byte(methods + " x")},
		{name: "batch body over its limit (1 MiB)", method: http.MethodPost, path: resolve,
			body: []byte(`{"methods":["` + strings.Repeat("a", 1<<20) + `"]}`)},
		{name: "registration over its limit (1 MiB)", method: http.MethodPost, path: "/v1/envs/env-07/apps/app-1/instances",
			body: []byte(`{"version":"` + strings.Repeat("v", 1<<20) + `"}`)},
		{name: "query of 1000 parameters", method: http.MethodGet,
			path: "/v1/envs/env-07/routes?" + strings.Repeat("app=a&", 1000)},
		{name: "path of 64 KiB", method: http.MethodGet, path: "/v1/envs/" + strings.Repeat("e", 64<<10)},
	}

	fmt.Printf("one replica over the 10,000-instance seed, GOMEMLIMIT=%s; %s of hostile load: %d stalled-body connections and 4 clients per kind below, while one client resolves a method\n\n",
		memLimit, d, stallers)

	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if kib, err := rssKiB(pid, "VmRSS"); err == nil && kib > peak.Load() {
				peak.Store(kib)
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	stalled := newCounter()
	for range stallers {
		wg.Go(func() { stallBodies(addr, resolve, deadline, stalled) })
	}
	for i := range kinds {
		k := &kinds[i]
		k.answers = newCounter()
		for range 4 {
			wg.Go(func() { k.send(base, deadline) })
		}
	}
	// Followers of every env up to the default cap and past it, that read
	// their answer's status line and then nothing: each stream's snapshot
	// write stalls until its write deadline.
	stuck := newCounter()
	for range hostileFollowers {
		wg.Go(func() { stuckFollower(addr, deadline, stuck) })
	}
	honest := newCounter()
	var honestLatency []time.Duration
	var mu sync.Mutex
	wg.Go(func() {
		c := &http.Client{Timeout: 5 * time.Second}
		for time.Now().Before(deadline) {
			start := time.Now()
			resp, err := c.Get(base + "/v1/envs/env-07/methods/acme.app3.v1.Service/M5")
			if err != nil {
				honest.add("error")
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			honestLatency = append(honestLatency, time.Since(start))
			mu.Unlock()
			honest.add(strconv.Itoa(resp.StatusCode))
			time.Sleep(10 * time.Millisecond)
		}
	})
	wg.Wait()
	close(stopSampling)
	<-sampled
	hwm, err := rssKiB(pid, "VmHWM")
	if err != nil {
		return err
	}

	fmt.Printf("%-38s %s\n", "kind", "answers")
	for _, k := range kinds {
		fmt.Printf("%-38s %s\n", k.name, k.answers)
	}
	fmt.Printf("%-38s %s\n", "stalled bodies (256 KiB announced)", stalled)
	fmt.Printf("%-38s %s\n", fmt.Sprintf("%d streams of every env, unread", hostileFollowers), stuck)
	fmt.Printf("%-38s %s; p50 %.1f ms, p99 %.1f ms\n\n", "honest resolution", honest,
		ms(percentile(honestLatency, 50)), ms(percentile(honestLatency, 99)))
	fmt.Printf("resident memory: idle %.1f MiB, peak sampled %.1f MiB, high-water mark %.1f MiB\n",
		float64(idle)/1024, float64(peak.Load())/1024, float64(hwm)/1024)
	fmt.Printf("request log: %d lines, %.1f MiB, longest line %d bytes\n",
		logLines.Load(), float64(logBytes.Load())/(1<<20), longestLine.Load())
	return nil
}

// hostileKind is one kind of hostile request, sent in a loop.
type hostileKind struct {
	name, method, path string
	body               []byte
	answers            *counter
}

func (k *hostileKind) send(base string, deadline time.Time) {
	c := &http.Client{Timeout: 30 * time.Second}
	for time.Now().Before(deadline) {
		var body io.Reader
		if k.body != nil {
			body = bytes.NewReader(k.body)
		}
		req, _ := http.NewRequest(k.method, base+k.path, body)
		if k.body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.Do(req)
		if err != nil {
			// A server that refuses a body early may close before it is
			// all sent; that is an answer too.
			k.answers.add("closed")
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		k.answers.add(strconv.Itoa(resp.StatusCode))
	}
}

// stallBodies announces a 256 KiB batch body, sends most of it, then sends
// nothing more, over and over: each connection holds what it sent until the
// server's body read deadline ends it.
func stallBodies(addr, path string, deadline time.Time, answers *counter) {
	const announced = 256 << 10
	sent := append([]byte(`{"methods":["`), bytes.Repeat([]byte("a"), announced*3/4)...)
	overConnections(addr, deadline, answers, func(conn net.Conn) string {
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: registry\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, announced)
		_, _ = conn.Write(sent)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return "closed"
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return strconv.Itoa(resp.StatusCode)
	})
}

// hostileFollowers is the default REGISTRY_MAX_FOLLOWERS and 64 more.
const hostileFollowers = follow.DefaultMaxFollowers + 64

// stuckFollower opens an event stream of every env, reads its status line,
// and reads nothing more until deadline; then again, until deadline.
func stuckFollower(addr string, deadline time.Time, answers *counter) {
	overConnections(addr, deadline, answers, func(conn net.Conn) string {
		fmt.Fprintf(conn, "GET /v1/routes/events HTTP/1.1\r\nHost: registry\r\n\r\n")
		status := make([]byte, len("HTTP/1.1 200"))
		if _, err := io.ReadFull(conn, status); err != nil {
			return "closed"
		}
		time.Sleep(time.Until(deadline))
		return string(status[len("HTTP/1.1 "):])
	})
}

// overConnections runs talk on one new connection after another until
// deadline, counting what each was answered.
func overConnections(addr string, deadline time.Time, answers *counter, talk func(net.Conn) string) {
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			answers.add("dial error")
			time.Sleep(100 * time.Millisecond)
			continue
		}
		_ = conn.SetDeadline(deadline.Add(15 * time.Second))
		answers.add(talk(conn))
		conn.Close()
	}
}

// counter counts answers by name.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{n: map[string]int{}} }

func (c *counter) add(answer string) {
	c.mu.Lock()
	c.n[answer]++
	c.mu.Unlock()
}

func (c *counter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.n))
	for k := range c.n {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, c.n[k])
	}
	return strings.Join(parts, ", ")
}

// rssKiB reads one of the process's memory figures (VmRSS, VmHWM) in KiB.
func rssKiB(pid int, field string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read the server's memory (Linux /proc): %w", err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
