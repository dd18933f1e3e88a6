package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runFollow opens n event streams and n blocked queries on one replica,
// reports the server's memory per idle follower, then registers instances
// and reports how long each registration took to reach every follower.
func runFollow(bin string, n, registrations int) error {
	// A long TTL keeps the seed alive without heartbeat churn, so that the
	// memory measured is the followers'; writes are not batched, so that a
	// registration is published as soon as it is written.
	reg, err := startRegistry(bin, io.Discard, "REGISTRY_TTL=1h", "REGISTRY_GC_AFTER=0", "REGISTRY_WRITE_BATCH_WINDOW=0",
		"REGISTRY_AUTH=none", "REGISTRY_LOG_LEVEL=warn")
	if err != nil {
		return err
	}
	defer reg.stop()
	base := reg.base
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2*n + 8}}
	fmt.Printf("%d event streams and %d blocked queries on GET /v1/envs/env-07/routes, one replica over the 10,000-instance seed; latencies from the registration's answer (the replica has published it by then)\n\n", n, n)

	before, err := serverMemory(client, base)
	if err != nil {
		return err
	}
	// Event streams: each records when it saw its k-th change.
	streams := make([]*follower, n)
	for i := range streams {
		f, err := openStream(client, base+"/v1/envs/env-07/routes/events")
		if err != nil {
			return fmt.Errorf("stream %d: %w", i, err)
		}
		streams[i] = f
	}
	time.Sleep(2 * time.Second)
	withStreams, err := serverMemory(client, base)
	if err != nil {
		return err
	}
	fmt.Printf("server memory per idle stream:          %6.1f KiB (heap+stacks in use, %d streams)\n",
		float64(withStreams-before)/float64(n)/1024, n)

	for r := range registrations {
		start, err := register(client, base, int64(9000000000000000000)+int64(r))
		if err != nil {
			return err
		}
		lat, err := waitAll(streams, r+1, start, 10*time.Second)
		if err != nil {
			return err
		}
		fmt.Printf("registration %d reached %d streams:     p50 %6.1f ms, p99 %6.1f ms, max %6.1f ms\n",
			r+1, n, ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
	}
	for _, f := range streams {
		f.close()
	}

	// Blocked queries: each waits for the next change of the tag it holds.
	resp, err := client.Get(base + "/v1/envs/env-07/routes")
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	tag := resp.Header.Get("ETag")
	time.Sleep(time.Second)
	before, err = serverMemory(client, base)
	if err != nil {
		return err
	}
	// answered is when a query's answer began (its status and new ETag tell
	// the client the table changed), read when its whole body was in.
	answered, read := make([]time.Time, n), make([]time.Time, n)
	var wg sync.WaitGroup
	var ready atomic.Int64
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, base+"/v1/envs/env-07/routes", nil)
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
				answered[i], read[i] = began, time.Now()
			}
		})
	}
	time.Sleep(3 * time.Second)
	withBlocked, err := serverMemory(client, base)
	if err != nil {
		return err
	}
	fmt.Printf("server memory per blocked query:        %6.1f KiB\n", float64(withBlocked-before)/float64(n)/1024)
	start, err := register(client, base, 9100000000000000000)
	if err != nil {
		return err
	}
	wg.Wait()
	var lat, whole []time.Duration
	for i, at := range answered {
		if at.IsZero() {
			return fmt.Errorf("a blocked query was not answered 200")
		}
		lat = append(lat, at.Sub(start))
		whole = append(whole, read[i].Sub(start))
	}
	fmt.Printf("registration reached %d blocked queries: p50 %6.1f ms, p99 %6.1f ms, max %6.1f ms (answer begun)\n",
		n, ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
	fmt.Printf("                                 bodies read: p50 %6.1f ms, p99 %6.1f ms, max %6.1f ms\n",
		ms(percentile(whole, 50)), ms(percentile(whole, 99)), ms(percentile(whole, 100)))
	return nil
}

// follower is one event stream and when it saw each change.
type follower struct {
	body    io.ReadCloser
	mu      sync.Mutex
	changes []time.Time
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
	f := &follower{body: resp.Body}
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	go func() {
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			if strings.HasPrefix(line, "event: change") {
				f.mu.Lock()
				f.changes = append(f.changes, time.Now())
				f.mu.Unlock()
			}
		}
	}()
	return f, nil
}

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

// register registers an instance and returns when it was answered.
func register(c *http.Client, base string, lease int64) (time.Time, error) {
	body := fmt.Sprintf(`{"lease_id":%d,"version":"v3","network":{"internal":"app-3.env-07.svc.cluster.local:8080"},"methods":["/acme.app3.v1.Service/M5"],"kernel":{"language":"Golang","version":"v0.0.1"},"proto_count":1}`, lease)
	resp, err := c.Post(base+"/v1/envs/env-07/apps/app-3/instances?namespace=firefly", "application/json", strings.NewReader(body))
	answered := time.Now()
	if err != nil {
		return answered, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		return answered, fmt.Errorf("register: %d %s", resp.StatusCode, raw)
	}
	return answered, nil
}

// serverMemory reads the replica's heap and stack bytes in use from /metrics.
func serverMemory(c *http.Client, base string) (int64, error) {
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var total int64
	for line := range bytes.Lines(raw) {
		for _, name := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes "} {
			if v, ok := strings.CutPrefix(string(line), name); ok {
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
