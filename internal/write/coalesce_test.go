package write

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"

	"github.com/acme/registry-api/internal/model"
)

// seedInstances is a ConfigMap holding n library entries, an hour old, of
// apps svc-0..svc-9 with leases 1..n.
func seedInstances(t testing.TB, ns, env string, n int) corev1.ConfigMap {
	data := make(map[string]string, n)
	for i := range n {
		app := fmt.Sprintf("svc-%d", i%10)
		lease := int64(i + 1)
		data[model.CanonicalKey(app, lease)] = libraryEntry(t, env, app, lease, t0.Add(-time.Hour))
	}
	return configMap(ns, env, data)
}

func TestCoalescing(t *testing.T) {
	const n = 200
	for _, tc := range []struct {
		window     time.Duration
		maxUpdates int64
	}{
		// In fake time every heartbeat arrives before the window ends.
		{window: 50 * time.Millisecond, maxUpdates: 1},
		{window: 0, maxUpdates: n},
	} {
		t.Run(fmt.Sprintf("window=%s", tc.window), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testCoalescing(t, n, tc.window, tc.maxUpdates) })
		})
	}
}

func testCoalescing(t *testing.T, n int, window time.Duration, maxUpdates int64) {
	counting := &countingStore{Store: newMemory(t, seedInstances(t, "firefly", "prod", n))}
	w := newWriter(t, Options{
		Store: counting, BatchWindow: window, Registerer: prometheus.NewRegistry(),
		Now: newTickingClock(t0, time.Second).Now,
	})
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			app := fmt.Sprintf("svc-%d", i%10)
			res, err := w.Heartbeat(context.Background(), "firefly", "prod", app, int64(i+1))
			if err != nil {
				t.Errorf("heartbeat %s.%d: %v", app, i+1, err)
				return
			}
			if !res.Node.RunDate.After(t0.Add(-time.Second)) {
				t.Errorf("heartbeat %s.%d answered run date %s", app, i+1, res.Node.RunDate)
			}
		})
	}
	began := time.Now()
	close(start)
	if window > 0 {
		synctest.Wait()
		if p, gets := pending(w), counting.gets.Load(); p != n || gets != 0 {
			t.Errorf("before the window: %d pending, %d gets; want %d pending and the store untouched", p, gets, n)
		}
	}
	wg.Wait()
	if d := time.Since(began); window > 0 && d != window {
		t.Errorf("heartbeats answered after %s, want the window (%s)", d, window)
	}

	updates := counting.updates.Load()
	t.Logf("%d heartbeats: %d updates, %d refused updates, %d gets", n, updates, counting.failedUpdates.Load(), counting.gets.Load())
	if window == 0 && updates != int64(n) {
		t.Errorf("%d updates without coalescing, want one per heartbeat (%d)", updates, n)
	}
	if window > 0 && (updates < 1 || updates > maxUpdates) {
		t.Errorf("%d updates with a %s window, want 1..%d", updates, window, maxUpdates)
	}
	if gets := counting.gets.Load(); window > 0 && gets != 1 {
		t.Errorf("%d gets with a %s window, want 1", gets, window)
	}
	var h dto.Metric
	if err := w.m.batchSize.Write(&h); err != nil {
		t.Fatal(err)
	}
	if got := h.GetHistogram().GetSampleSum(); got != float64(n) {
		t.Errorf("batch sizes sum to %v, want %d", got, n)
	}
	wantBatches := uint64(n)
	if window > 0 {
		wantBatches = 1
	}
	if got := h.GetHistogram().GetSampleCount(); got != wantBatches {
		t.Errorf("%d batches, want %d", got, wantBatches)
	}
	for key, raw := range getData(t, counting, "firefly", "prod") {
		node, _, err := model.ParseEntry("firefly", "prod", key, []byte(raw), model.ParseOptions{})
		if err != nil || node.RunDate.Before(t0) {
			t.Errorf("entry %s not refreshed: %s (%v)", key, raw, err)
		}
	}
}

// An operation that arrives while its ConfigMap is being written waits for
// that write, then for the rest of its own window, counted from its arrival.
// The writer's clock is the default, time.Now: the bubble's fake clock drives
// both it and the window's timer.
func TestWindowRunsFromFirstArrivalThroughTheWriteInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			window  = 50 * time.Millisecond
			latency = 30 * time.Millisecond // of every Update
			later   = 60 * time.Millisecond // the second heartbeat's arrival, while the first is written
		)
		start := time.Now()
		counting := &countingStore{Store: slowStore{
			Store: newMemory(t, configMap("firefly", "prod", map[string]string{
				"svc-0.1": libraryEntry(t, "prod", "svc-0", 1, start.Add(-time.Hour)),
				"svc-0.2": libraryEntry(t, "prod", "svc-0", 2, start.Add(-time.Hour)),
			})),
			latency: latency,
		}}
		w := newWriter(t, Options{Store: counting, BatchWindow: window})
		answered := make([]time.Duration, 2)
		var wg sync.WaitGroup
		heartbeat := func(lease int64) {
			wg.Go(func() {
				if _, err := w.Heartbeat(context.Background(), "firefly", "prod", "svc-0", lease); err != nil {
					t.Errorf("heartbeat %d: %v", lease, err)
				}
				answered[lease-1] = time.Since(start)
			})
		}
		heartbeat(1)
		time.Sleep(later)
		heartbeat(2)
		// The first write ends at window+latency; the second op's window,
		// counted from its arrival, has 30ms left, so it is not written yet.
		time.Sleep(window + latency - later + 20*time.Millisecond)
		synctest.Wait()
		if p, u := pending(w), counting.updates.Load(); p != 1 || u != 1 {
			t.Errorf("%s after the second arrival: %d pending, %d updates; want 1 and 1", time.Since(start)-later, p, u)
		}
		wg.Wait()
		if want := window + latency; answered[0] != want {
			t.Errorf("first heartbeat answered after %s, want %s", answered[0], want)
		}
		if want := later + window + latency; answered[1] != want {
			t.Errorf("second heartbeat answered after %s, want %s (its window from arrival, then the write)", answered[1], want)
		}
		if u := counting.updates.Load(); u != 2 {
			t.Errorf("%d updates, want 2", u)
		}
	})
}
