package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runFollow measures following as a gateway fleet does it, on one replica
// over the 10,000-instance seed: n event streams of every env
// (GET /v1/routes/events), then n blocked queries on GET /v1/routes. For
// each it reports the replica's resident memory per follower, its CPU at
// rest, and per registration the CPU and the time it takes to reach every
// follower, against the same registrations made with no follower open.
// Last, GET /v1/routes plain and gzip-compressed, side by side.
func runFollow(bin string, n, registrations int) error {
	// A long TTL keeps the seed alive without heartbeat churn, so that what
	// is measured is the followers'; writes are not batched, so that a
	// registration is published as soon as it is written. GOMEMLIMIT is the
	// deployment's.
	reg, err := startRegistry(bin, io.Discard, "REGISTRY_TTL=1h", "REGISTRY_GC_AFTER=0", "REGISTRY_WRITE_BATCH_WINDOW=0",
		"REGISTRY_AUTH=none", "REGISTRY_LOG_LEVEL=warn", "GOMEMLIMIT="+deploymentMemLimit)
	if err != nil {
		return err
	}
	defer reg.stop()
	base, pid := reg.base, reg.cmd.Process.Pid
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2*n + 8, DisableCompression: true}}
	fmt.Printf("one replica over the 10,000-instance seed (GOMEMLIMIT=%s); latencies from when each registration was sent\n\n", deploymentMemLimit)

	lease := int64(9000000000000000000)
	registerAll := func(k int, wait func(r int, start time.Time) ([]time.Duration, error)) (cpu time.Duration, lats [][]time.Duration, err error) {
		for r := range k {
			before, err := cpuTime(pid)
			if err != nil {
				return 0, nil, err
			}
			lease++
			start, err := register(client, base, lease)
			if err != nil {
				return 0, nil, err
			}
			lat, err := wait(r, start)
			if err != nil {
				return 0, nil, err
			}
			// Let the replica finish writing what it wakes, then count.
			time.Sleep(200 * time.Millisecond)
			after, err := cpuTime(pid)
			if err != nil {
				return 0, nil, err
			}
			cpu += after - before
			lats = append(lats, lat)
		}
		return cpu, lats, nil
	}
	settle := func() { time.Sleep(200 * time.Millisecond) }
	baseCPU, _, err := registerAll(registrations, func(int, time.Time) ([]time.Duration, error) { settle(); return nil, nil })
	if err != nil {
		return err
	}
	fmt.Printf("no followers: CPU per registration %6.1f ms (the write, the re-index, the publication)\n\n", ms(baseCPU)/float64(registrations))
	restCPU, err := atRest(pid)
	if err != nil {
		return err
	}
	fmt.Printf("no followers: CPU at rest over 30 s (polls go on): %.1f ms\n\n", ms(restCPU))
	idleRSS, err := rssKiB(pid, "VmRSS")
	if err != nil {
		return err
	}

	// Event streams of every env: each reads its snapshot (the whole
	// table), then records when it saw each change.
	streams := make([]*follower, n)
	opened := time.Now()
	var wg sync.WaitGroup
	var openErr atomic.Value
	sem := make(chan struct{}, 32)
	for i := range streams {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			f, err := openStream(client, base+"/v1/routes/events")
			if err != nil {
				openErr.Store(fmt.Errorf("stream %d: %w", i, err))
				return
			}
			streams[i] = f
			f.waitSnapshot()
		})
	}
	wg.Wait()
	if err, _ := openErr.Load().(error); err != nil {
		return err
	}
	fmt.Printf("%d streams of GET /v1/routes/events opened and their snapshots read in %.1f s\n", n, time.Since(opened).Seconds())
	time.Sleep(2 * time.Second)
	if err := report(client, base, pid, "streams", n, idleRSS); err != nil {
		return err
	}
	cpu, err := atRest(pid)
	if err != nil {
		return err
	}
	fmt.Printf("CPU at rest over 30 s (two pings per stream, polls go on): %.1f ms, %.1f µs per ping beyond no followers\n",
		ms(cpu), float64((cpu-restCPU).Microseconds())/float64(2*n))
	var lats [][]time.Duration
	cpu, lats, err = registerAll(registrations, func(r int, start time.Time) ([]time.Duration, error) {
		return waitAll(streams, r+1, start, 10*time.Second)
	})
	if err != nil {
		return err
	}
	for r, lat := range lats {
		fmt.Printf("registration %d reached %d streams: p50 %6.1f ms, p99 %6.1f ms, max %6.1f ms\n",
			r+1, n, ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
	}
	fmt.Printf("CPU per registration with %d streams: %6.1f ms (%6.1f ms beyond no followers)\n\n", n,
		ms(cpu)/float64(registrations), ms(cpu-baseCPU)/float64(registrations))
	for _, f := range streams {
		f.close()
	}
	time.Sleep(2 * time.Second)

	// Blocked queries: each waits for the next change of the tag it holds.
	if idleRSS, err = rssKiB(pid, "VmRSS"); err != nil {
		return err
	}
	tag, _, err := get(client, base+"/v1/routes", "")
	if err != nil {
		return err
	}
	type answer struct{ began, read time.Time }
	answers := make([]answer, n)
	var ready atomic.Int64
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, base+"/v1/routes", nil)
			req.Header.Set("If-None-Match", tag)
			req.Header.Set("Prefer", "wait=120")
			ready.Add(1)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			began := time.Now()
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				answers[i] = answer{began, time.Now()}
			}
		})
	}
	time.Sleep(3 * time.Second)
	if err := report(client, base, pid, "blocked queries", n, idleRSS); err != nil {
		return err
	}
	if cpu, err = atRest(pid); err != nil {
		return err
	}
	fmt.Printf("CPU at rest over 30 s (polls go on): %.1f ms\n", ms(cpu))
	before, err := cpuTime(pid)
	if err != nil {
		return err
	}
	lease++
	start, err := register(client, base, lease)
	if err != nil {
		return err
	}
	wg.Wait()
	after, err := cpuTime(pid)
	if err != nil {
		return err
	}
	var lat, whole []time.Duration
	for _, a := range answers {
		if a.began.IsZero() {
			return fmt.Errorf("a blocked query was not answered 200")
		}
		lat = append(lat, a.began.Sub(start))
		whole = append(whole, a.read.Sub(start))
	}
	fmt.Printf("registration reached %d blocked queries: p50 %6.1f ms, p99 %6.1f ms, max %6.1f ms (answer begun)\n",
		n, ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
	fmt.Printf("                                 bodies read: p50 %6.1f ms, p99 %6.1f ms, max %6.1f ms\n",
		ms(percentile(whole, 50)), ms(percentile(whole, 99)), ms(percentile(whole, 100)))
	fmt.Printf("CPU of the registration that answered them: %6.1f ms (%6.1f ms with no followers)\n\n",
		ms(after-before), ms(baseCPU)/float64(registrations))

	return compareGzip(client, base, pid)
}

// deploymentMemLimit is GOMEMLIMIT as deploy/deployment.yaml sets it.
const deploymentMemLimit = "448MiB"

// report prints the replica's resident memory, and its heap and stacks in
// use, per follower beyond idleRSS.
func report(c *http.Client, base string, pid int, what string, n int, idleRSS int64) error {
	rss, err := rssKiB(pid, "VmRSS")
	if err != nil {
		return err
	}
	inUse, err := serverMemory(c, base)
	if err != nil {
		return err
	}
	fmt.Printf("with %d %s: RSS %.1f MiB (%.1f KiB per follower beyond %.1f MiB before), heap+stacks in use %.1f MiB\n",
		n, what, float64(rss)/1024, float64(rss-idleRSS)/float64(n), float64(idleRSS)/1024, float64(inUse)/(1<<20))
	return nil
}

// atRest prints the replica's CPU over two ping intervals with nothing
// changing: each stream writes two ping comments, polls go on, and
// nothing else of the followers' should run.
func atRest(pid int) (time.Duration, error) {
	const d = 30 * time.Second
	before, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	time.Sleep(d)
	after, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	return after - before, nil
}

// compareGzip reads GET /v1/routes plain and gzip-compressed, alternately,
// and prints the bytes on the wire and the replica's CPU per request.
func compareGzip(c *http.Client, base string, pid int) error {
	const rounds = 20
	fmt.Println("GET /v1/routes of the seed, plain against gzip (Accept-Encoding: gzip), alternating:")
	var cpu [2]time.Duration
	var size [2]int
	for range rounds {
		for i, enc := range []string{"", "gzip"} {
			before, err := cpuTime(pid)
			if err != nil {
				return err
			}
			_, n, err := get(c, base+"/v1/routes", enc)
			if err != nil {
				return err
			}
			after, err := cpuTime(pid)
			if err != nil {
				return err
			}
			cpu[i] += after - before
			size[i] = n
		}
	}
	for i, name := range []string{"plain", "gzip"} {
		fmt.Printf("  %-5s %9d bytes on the wire, CPU %6.2f ms per request\n", name, size[i], ms(cpu[i])/rounds)
	}
	// The first answer after a change renders the table, and the first
	// compressed one compresses it: once per change, for every client.
	if _, err := register(c, base, 9200000000000000000); err != nil {
		return err
	}
	for _, enc := range []string{"", "gzip"} {
		before, err := cpuTime(pid)
		if err != nil {
			return err
		}
		if _, _, err := get(c, base+"/v1/routes", enc); err != nil {
			return err
		}
		after, err := cpuTime(pid)
		if err != nil {
			return err
		}
		fmt.Printf("  first %-5q answer after a change: CPU %6.2f ms\n", enc, ms(after-before))
	}
	return nil
}

// get reads url whole, asking for enc when set, and returns its tag and the
// bytes that came over the wire.
func get(c *http.Client, url, enc string) (string, int, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if enc != "" {
		req.Header.Set("Accept-Encoding", enc)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != enc {
		return "", 0, fmt.Errorf("GET %s (%q): %d, Content-Encoding %q", url, enc, resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	return resp.Header.Get("ETag"), int(n), nil
}

// cpuTime is the CPU time process pid has used: the sum of its threads'
// run times, from /proc, in nanoseconds.
func cpuTime(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("threads of %d: %v", pid, err)
	}
	var total time.Duration
	for _, path := range tasks {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue // the thread ended meanwhile
		}
		f := strings.Fields(string(raw))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q", path, raw)
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// follower is one event stream and when it saw each change.
type follower struct {
	body     io.ReadCloser
	snapshot chan struct{}
	mu       sync.Mutex
	changes  []time.Time
}

func openStream(c *http.Client, url string) (*follower, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	f := &follower{body: resp.Body, snapshot: make(chan struct{})}
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	go func() {
		// Lines are read a buffer at a time: a snapshot's data line is the
		// whole table, and only the lines that name an event matter.
		start, inSnapshot := true, false
		for {
			line, err := rd.ReadSlice('\n')
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return
			}
			if start && bytes.HasPrefix(line, []byte("event: ")) {
				switch {
				case bytes.HasPrefix(line, []byte("event: change")):
					f.mu.Lock()
					f.changes = append(f.changes, time.Now())
					f.mu.Unlock()
				case bytes.HasPrefix(line, []byte("event: snapshot")):
					inSnapshot = true
				}
			}
			if start && inSnapshot && len(line) == 1 && err == nil {
				// The blank line after the snapshot's data: read whole.
				inSnapshot = false
				close(f.snapshot)
			}
			start = err == nil
		}
	}()
	return f, nil
}

// waitSnapshot returns once the stream's snapshot event was read whole.
func (f *follower) waitSnapshot() { <-f.snapshot }

func (f *follower) close() { _ = f.body.Close() }

func waitAll(fs []*follower, k int, start time.Time, timeout time.Duration) ([]time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		var lat []time.Duration
		for _, f := range fs {
			f.mu.Lock()
			if len(f.changes) >= k {
				lat = append(lat, f.changes[k-1].Sub(start))
			}
			f.mu.Unlock()
		}
		if len(lat) == len(fs) {
			return lat, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("after %s only %d of %d streams saw change %d", timeout, len(lat), len(fs), k)
		}
		time.Sleep(time.Millisecond)
	}
}

// register registers an instance and returns when it was sent: a replica
// publishes the registration before it answers it.
func register(c *http.Client, base string, lease int64) (time.Time, error) {
	body := fmt.Sprintf(`{"lease_id":%d,"version":"v3","network":{"internal":"app-3.env-07.svc.cluster.local:8080"},"methods":["/acme.app3.v1.Service/M5"],"kernel":{"language":"Golang","version":"v0.0.1"},"proto_count":1}`, lease)
	sent := time.Now()
	resp, err := c.Post(base+"/v1/envs/env-07/apps/app-3/instances?namespace=firefly", "application/json", strings.NewReader(body))
	if err != nil {
		return sent, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		return sent, fmt.Errorf("register: %d %s", resp.StatusCode, raw)
	}
	return sent, nil
}

// scrape reads the replica's /metrics.
func scrape(c *http.Client, base string) (string, error) {
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return string(raw), err
}

// serverMemory reads the replica's heap and stack bytes in use from /metrics.
func serverMemory(c *http.Client, base string) (int64, error) {
	raw, err := scrape(c, base)
	if err != nil {
		return 0, err
	}
	var total int64
	for line := range strings.Lines(raw) {
		for _, name := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
			if v, ok := strings.CutPrefix(line, name); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return 0, err
				}
				total += int64(f)
			}
		}
	}
	return total, nil
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Sorted(slices.Values(d))
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
