package write

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
)

type failMode int

const (
	pass failMode = iota
	// refuse fails before the write reaches the store: connection refused.
	refuse
	// lostAnswer writes, then fails: the answer timed out on the way back.
	lostAnswer
)

// flakyStore fails calls as its modes say, the way a Kube store reports an
// unreachable API server.
type flakyStore struct {
	store.Store
	down   atomic.Bool
	writes atomic.Int64
	// mode decides the fate of the nth write (from 1); nil passes all.
	mode func(n int64) failMode
}

func connRefused(op, ns, name string) error {
	return fmt.Errorf("%s configmap %s/%s: %w", op, ns, name,
		&net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 443},
			Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}})
}

func (s *flakyStore) Get(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	if s.down.Load() {
		return nil, connRefused("get", ns, name)
	}
	return s.Store.Get(ctx, ns, name)
}

func (s *flakyStore) write(ctx context.Context, op string, cm *corev1.ConfigMap, f func(context.Context, *corev1.ConfigMap) (*corev1.ConfigMap, error)) (*corev1.ConfigMap, error) {
	mode := pass
	if s.down.Load() {
		mode = refuse
	} else if s.mode != nil {
		mode = s.mode(s.writes.Add(1))
	}
	switch mode {
	case refuse:
		return nil, connRefused(op, cm.Namespace, cm.Name)
	case lostAnswer:
		if _, err := f(ctx, cm); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s configmap %s/%s: %w", op, cm.Namespace, cm.Name, apierrors.NewTimeoutError("request timed out", 1))
	}
	return f(ctx, cm)
}

func (s *flakyStore) Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	return s.write(ctx, "update", cm, s.Store.Update)
}

func (s *flakyStore) Create(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	return s.write(ctx, "create", cm, s.Store.Create)
}

func TestUnreachableStoreFailsFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		flaky := &flakyStore{Store: newMemory(t, seedInstances(t, "firefly", "prod", 3))}
		flaky.down.Store(true)
		w := newWriter(t, Options{Store: flaky, Now: newTickingClock(t0, time.Second).Now, Backoff: DefaultBackoff})
		ctx := context.Background()
		for name, call := range map[string]func() error{
			"register":   func() error { _, err := w.Register(ctx, userService(42)); return err },
			"heartbeat":  func() error { _, err := w.Heartbeat(ctx, "firefly", "prod", "svc-0", 1); return err },
			"deregister": func() error { return w.Deregister(ctx, "firefly", "prod", "svc-0", 1) },
		} {
			start := time.Now()
			err := call()
			wantCode(t, err, model.CodeStoreUnavailable)
			// Not retried: the client hears 503 at once and may try another
			// replica. In fake time any backoff shows as elapsed time.
			if d := time.Since(start); d != 0 {
				t.Errorf("%s took %s to fail, want no backoff", name, d)
			}
		}
	})
}

func TestAcknowledgedWritesSurviveStoreFailures(t *testing.T) {
	for _, window := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(fmt.Sprintf("window=%s", window), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testAcknowledgedWritesSurvive(t, window) })
		})
	}
}

func testAcknowledgedWritesSurvive(t *testing.T, window time.Duration) {
	mem := newMemory(t)
	// Period five, so that a passing write is followed by each fate.
	fates := [5]failMode{pass, refuse, pass, lostAnswer, pass}
	flaky := &flakyStore{Store: mem, mode: func(n int64) failMode { return fates[n%5] }}
	w := newWriter(t, Options{Store: flaky, Now: newTickingClock(t0, time.Second).Now, BatchWindow: window})
	ctx := context.Background()

	// Waves, so that batches meet every failure mode in turn.
	const waves, perWave = 6, 10
	var (
		mu           sync.Mutex
		registered   = make(map[int64]bool)
		deregistered = make(map[int64]bool)
		tried        = make(map[int64]bool) // deregistrations sent, acknowledged or not
		failures     int
	)
	record := func(set map[int64]bool, lease int64, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			set[lease] = true
			return
		}
		failures++
		if model.ErrorCode(err) != model.CodeStoreUnavailable {
			t.Errorf("lease %d: %v, want store_unavailable", lease, err)
		}
	}
	for wave := range int64(waves) {
		var wg sync.WaitGroup
		for i := range int64(perWave) {
			wg.Go(func() {
				lease := wave*perWave + i + 1
				_, err := w.Register(ctx, userService(lease))
				record(registered, lease, err)
				if err == nil && lease%2 == 0 {
					mu.Lock()
					tried[lease] = true
					mu.Unlock()
					record(deregistered, lease, w.Deregister(ctx, "firefly", "prod", "user-service", lease))
				}
			})
		}
		wg.Wait()
	}

	cm, err := mem.Get(ctx, "firefly", "ff-registry-prod")
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	var data map[string]string
	if cm != nil {
		data = cm.Data
	}
	for lease := range registered {
		_, present := data[model.CanonicalKey("user-service", lease)]
		if deregistered[lease] && present {
			t.Errorf("acknowledged deregistration of %d undone", lease)
		}
		// A deregistration whose answer was lost may have happened.
		if !tried[lease] && !present {
			t.Errorf("acknowledged registration of %d lost", lease)
		}
	}
	if failures == 0 || len(registered) == 0 || len(deregistered) == 0 {
		t.Errorf("%d failures, %d acknowledged registrations, %d deregistrations: the test exercised too little",
			failures, len(registered), len(deregistered))
	}
	t.Logf("%d acknowledged registrations, %d deregistrations, %d failures", len(registered), len(deregistered), failures)
}
