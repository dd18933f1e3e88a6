package registry

import (
	"context"
	"fmt"
	"sync"
	"testing"
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
		{window: 50 * time.Millisecond, maxUpdates: 5},
		{window: 0, maxUpdates: n},
	} {
		t.Run(fmt.Sprintf("window=%s", tc.window), func(t *testing.T) {
			counting := &countingStore{Store: newMemory(t, seedInstances(t, "firefly", "prod", n))}
			w := newWriter(t, Options{
				Store: counting, BatchWindow: tc.window, Registerer: prometheus.NewRegistry(),
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
			close(start)
			wg.Wait()

			updates := counting.updates.Load()
			t.Logf("%d heartbeats: %d updates, %d refused updates, %d gets", n, updates, counting.failedUpdates.Load(), counting.gets.Load())
			if tc.window == 0 && updates != n {
				t.Errorf("%d updates without coalescing, want one per heartbeat (%d)", updates, n)
			}
			if tc.window > 0 && (updates < 1 || updates > tc.maxUpdates) {
				t.Errorf("%d updates with a %s window, want 1..%d", updates, tc.window, tc.maxUpdates)
			}
			var h dto.Metric
			if err := w.m.batchSize.Write(&h); err != nil {
				t.Fatal(err)
			}
			if got := h.GetHistogram().GetSampleSum(); got != n {
				t.Errorf("batch sizes sum to %v, want %d", got, n)
			}
			for key, raw := range getData(t, counting, "firefly", "prod") {
				node, _, err := model.ParseEntry("firefly", "prod", key, []byte(raw), model.ParseOptions{})
				if err != nil || node.RunDate.Before(t0) {
					t.Errorf("entry %s not refreshed: %s (%v)", key, raw, err)
				}
			}
		})
	}
}
