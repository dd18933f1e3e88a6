package write

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
)

// t0 is the library fixture's run_date.
var t0 = time.Date(2026, 11, 26, 12, 24, 22, 0, time.UTC)

// tickingClock advances by step on every reading, so that every write has a
// run_date of its own.
type tickingClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func newTickingClock(start time.Time, step time.Duration) *tickingClock {
	return &tickingClock{now: start, step: step}
}

func (c *tickingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now
	c.now = c.now.Add(c.step)
	return t
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

// bubbleClock is a synctest bubble's fake time, one nanosecond further on
// at every reading. Fake time stands still while goroutines run, so that
// time.Now would give two registrations with a deregistration between them
// the same generated lease id; a real clock has moved on by then.
func bubbleClock() func() time.Time {
	var reads atomic.Int64
	return func() time.Time { return time.Now().Add(time.Duration(reads.Add(1))) }
}

// fastBackoff keeps tests quick while still retrying with jitter.
var fastBackoff = wait.Backoff{Steps: 40, Duration: time.Millisecond, Factor: 1.2, Jitter: 1.0}

// countingStore counts the calls that reach the wrapped store and how many
// writes it accepted.
type countingStore struct {
	store.Store
	gets, updates, creates, failedUpdates atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, ns, name)
}

func (s *countingStore) Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	out, err := s.Store.Update(ctx, cm)
	if err == nil {
		s.updates.Add(1)
	} else {
		s.failedUpdates.Add(1)
	}
	return out, err
}

func (s *countingStore) Create(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	out, err := s.Store.Create(ctx, cm)
	if err == nil {
		s.creates.Add(1)
	}
	return out, err
}

func newMemory(t testing.TB, seed ...corev1.ConfigMap) *store.Memory {
	t.Helper()
	m, err := store.NewMemory(seed...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newWriter(t testing.TB, opts Options) *Writer {
	t.Helper()
	if opts.Backoff == (wait.Backoff{}) {
		opts.Backoff = fastBackoff
	}
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func configMap(ns, env string, data map[string]string) corev1.ConfigMap {
	return corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: model.ConfigMapName(env)},
		Data:       data,
	}
}

// libraryEntry is an entry as the Go library writes it.
func libraryEntry(t testing.TB, env, app string, lease int64, runDate time.Time) string {
	t.Helper()
	b, err := json.Marshal(model.ServiceNode{
		ProtoCount: 1,
		LeaseID:    lease,
		RunDate:    model.FormatRunDate(runDate, time.UTC),
		Methods:    map[string]bool{"/acme.lib.v1.LibService/Do": true},
		Network:    model.Network{SN: "firefly-main-network", Internal: app + ":8080"},
		Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
		Meta:       model.Meta{Env: env, AppID: app, Version: "v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func userService(lease int64) Registration {
	return Registration{
		Namespace:  "firefly",
		Env:        "prod",
		AppID:      "user-service",
		LeaseID:    lease,
		Version:    "v1",
		Network:    model.Network{SN: "firefly-main-network", Internal: "user-service:8080", External: "127.0.0.1"},
		Methods:    []string{"/acme.user.v1.UserService/Login", "/acme.user.v1.UserService/GetProfile"},
		Kernel:     model.Kernel{Language: "Golang", Version: "v0.0.1"},
		ProtoCount: 1,
	}
}

func getData(t testing.TB, s store.Store, ns, env string) map[string]string {
	t.Helper()
	cm, err := s.Get(context.Background(), ns, model.ConfigMapName(env))
	if err != nil {
		t.Fatalf("get %s/%s: %v", ns, model.ConfigMapName(env), err)
	}
	return cm.Data
}

func wantCode(t testing.TB, err error, code model.Code) {
	t.Helper()
	if got := model.ErrorCode(err); err == nil || got != code {
		t.Fatalf("error %v: code %s, want %s", err, got, code)
	}
}
