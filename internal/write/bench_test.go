package write

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/acme/registry-api/internal/store"
)

// slowStore adds a round trip's latency to every Update, as an API server would.
type slowStore struct {
	store.Store
	latency time.Duration
}

func (s slowStore) Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	time.Sleep(s.latency)
	return s.Store.Update(ctx, cm)
}

// BenchmarkHeartbeat has 500 instances heartbeat concurrently against an API
// server that takes 2ms per Update. ns/op is wall time per heartbeat across
// all of them; updates/op is how many Updates each heartbeat cost.
func BenchmarkHeartbeat(b *testing.B) {
	const instances = 500
	for _, window := range []time.Duration{0, 10 * time.Millisecond, DefaultBatchWindow} {
		b.Run(fmt.Sprintf("window=%s", window), func(b *testing.B) {
			counting := &countingStore{Store: slowStore{newMemory(b, seedInstances(b, "firefly", "prod", instances)), 2 * time.Millisecond}}
			w := newWriter(b, Options{Store: counting, BatchWindow: window, Backoff: DefaultBackoff, Now: newTickingClock(t0, time.Second).Now})
			var next, failed atomic.Int64
			b.SetParallelism((instances + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := next.Add(1) % instances
				app := fmt.Sprintf("svc-%d", i%10)
				for pb.Next() {
					if _, err := w.Heartbeat(context.Background(), "firefly", "prod", app, i+1); err != nil {
						failed.Add(1)
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(counting.updates.Load())/float64(b.N), "updates/op")
			b.ReportMetric(float64(counting.failedUpdates.Load())/float64(b.N), "conflicts/op")
			b.ReportMetric(float64(failed.Load())/float64(b.N), "errors/op")
		})
	}
}

// BenchmarkHeartbeatCadence is the scenario in real time: 500
// instances heartbeat every 5s (random phase) through one replica for 10s,
// against an API server taking 2ms per Update. It reports Updates per second
// and heartbeat latency percentiles; run it with -benchtime 1x.
func BenchmarkHeartbeatCadence(b *testing.B) {
	const (
		instances = 500
		every     = 5 * time.Second
		duration  = 10 * time.Second
	)
	for _, window := range []time.Duration{0, DefaultBatchWindow} {
		b.Run(fmt.Sprintf("window=%s", window), func(b *testing.B) {
			for b.Loop() {
				counting := &countingStore{Store: slowStore{newMemory(b, seedInstances(b, "firefly", "prod", instances)), 2 * time.Millisecond}}
				w := newWriter(b, Options{Store: counting, BatchWindow: window, Backoff: DefaultBackoff})
				var mu sync.Mutex
				var latencies []time.Duration
				var failed atomic.Int64
				deadline := time.Now().Add(duration)
				var wg sync.WaitGroup
				for i := range instances {
					wg.Go(func() {
						time.Sleep(time.Duration(rand.Int64N(int64(every))))
						for time.Now().Before(deadline) {
							start := time.Now()
							if _, err := w.Heartbeat(context.Background(), "firefly", "prod", fmt.Sprintf("svc-%d", i%10), int64(i+1)); err != nil {
								failed.Add(1)
							}
							mu.Lock()
							latencies = append(latencies, time.Since(start))
							mu.Unlock()
							time.Sleep(every)
						}
					})
				}
				wg.Wait()
				slices.Sort(latencies)
				pct := func(p float64) float64 { return float64(latencies[int(p*float64(len(latencies)-1))]) / 1e6 }
				b.ReportMetric(float64(counting.updates.Load())/duration.Seconds(), "updates/s")
				b.ReportMetric(float64(len(latencies))/duration.Seconds(), "heartbeats/s")
				b.ReportMetric(pct(0.5), "p50-ms")
				b.ReportMetric(pct(0.99), "p99-ms")
				b.ReportMetric(float64(failed.Load()), "errors")
			}
		})
	}
}
