//go:build integration

// These tests need bin/kube-test-apiserver (`make kube-apiserver`); they fail,
// never skip, without it:
//
//	go test -race -count=1 -tags integration -run Integration ./internal/upkeep/
package upkeep

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/acme/registry-api/internal/election"
	"github.com/acme/registry-api/internal/kubetest"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/write"
)

// Lease timings for a real, possibly busy API server: short, with room for
// slow renewals.
const (
	itLease = 3 * time.Second
	itRenew = 2 * time.Second
	itRetry = 250 * time.Millisecond
)

// cutTransport fails every request once cut, as a network partition would.
type cutTransport struct {
	next http.RoundTripper
	cut  *atomic.Bool
}

func (c cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("network unreachable")
	}
	return c.next.RoundTrip(r)
}

// startAPIServer starts a real API server for one test, stopped when the
// test ends, and returns it with an admin clientset.
func startAPIServer(t *testing.T) (*kubetest.Server, kubernetes.Interface) {
	t.Helper()
	s, err := kubetest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping the API server: %v", err)
		}
	})
	admin, err := s.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return s, admin
}

// replicaClient is a clientset of its own, as each replica has, that can be
// cut off from the API server.
func replicaClient(t *testing.T, s *kubetest.Server, cut *atomic.Bool) kubernetes.Interface {
	t.Helper()
	cfg, err := s.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 2 * time.Second
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return cutTransport{next: rt, cut: cut} }
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestIntegrationLeaderKeepsPodEntriesAlive runs two replicas' leader work
// against a real API server: the leader keeps a pod-bound entry alive while
// its pod exists; cut off, it stops, and the other replica takes over within
// the lease duration and carries on; once the pod is deleted the entry goes;
// a long-dead library entry is collected, a live one is not.
func TestIntegrationLeaderKeepsPodEntriesAlive(t *testing.T) {
	s, admin := startAPIServer(t)
	ctx := t.Context()
	const ns, env = "upkeep-itest", "prod"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Without a scheduler the pod stays Pending, but it exists.
	pod, err := admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app-0"},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	const (
		ttl     = 2 * time.Second
		gcAfter = time.Minute
	)
	now := time.Now()
	bound := entryJSON(t, env, "bound", 1, now, &model.RegisteredBy{Username: "system:serviceaccount:" + ns + ":app", Namespace: ns,
		Pod: &model.PodRef{Name: pod.Name, UID: string(pod.UID)}}, model.KeepalivePod)
	dead := entryJSON(t, env, "dead", 2, now.Add(-time.Hour), nil, "")
	alive := entryJSON(t, env, "alive", 3, now.Add(-gcAfter/2), nil, "")
	if _, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: model.ConfigMapName(env)},
		Data:       map[string]string{"bound.1": bound, "dead.2": dead, "alive.3": alive},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	type rep struct {
		cut     atomic.Bool
		elector *election.Elector
		done    chan struct{}
		cancel  context.CancelFunc
	}
	start := func(id string) *rep {
		r := &rep{done: make(chan struct{})}
		cs := replicaClient(t, s, &r.cut)
		st := &store.Kube{Client: cs}
		w, err := write.New(write.Options{Store: st, TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		log := zerolog.New(zerolog.NewTestWriter(t)).With().Str("replica", id).Logger()
		keeper, err := NewKeeper(Options{ConfigMaps: st, Pods: KubePods{Client: cs}, Writer: w, Namespaces: []string{ns},
			Interval: ttl / 2, GCAfter: gcAfter, ListTimeout: time.Second, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		r.elector, err = election.New(election.Options{Client: cs, Namespace: ns, Name: "registry-api", Identity: id,
			LeaseDuration: itLease, RenewDeadline: itRenew, RetryPeriod: itRetry, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() {
			defer close(r.done)
			r.elector.Run(rctx, keeper.Run)
			w.Close()
		}()
		t.Cleanup(func() {
			r.cancel()
			<-r.done
		})
		return r
	}
	entries := func() map[string]string {
		cm, err := admin.CoreV1().ConfigMaps(ns).Get(ctx, model.ConfigMapName(env), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.Data
	}
	boundAge := func() time.Duration {
		raw, ok := entries()["bound.1"]
		if !ok {
			t.Fatal("the pod-bound entry is gone while its pod exists")
		}
		return time.Since(runDate(t, raw))
	}
	waitFor := func(timeout time.Duration, what string, cond func() bool) time.Duration {
		t.Helper()
		begin := time.Now()
		for !cond() {
			if time.Since(begin) > timeout {
				t.Fatalf("%s: not within %s", what, timeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(begin)
	}

	a := start("replica-a")
	waitFor(10*time.Second, "replica-a leading", a.elector.Leading)
	b := start("replica-b")

	// GC: the long-dead library entry goes, the live one stays.
	waitFor(10*time.Second, "the dead entry collected", func() bool { _, ok := entries()["dead.2"]; return !ok })
	if _, ok := entries()["alive.3"]; !ok {
		t.Fatal("GC removed an entry younger than REGISTRY_GC_AFTER")
	}

	// Kept alive past several TTLs with no heartbeat from anyone else.
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if age := boundAge(); age > ttl+time.Second {
			t.Fatalf("the pod-bound entry is %s old, past the TTL %s (run_date has second precision)", age, ttl)
		}
	}

	// The leader is cut off: it stops, and b takes over within the lease
	// duration (plus b's polling) and keeps the entry alive.
	a.cut.Store(true)
	cut := time.Now()
	waitFor(itRenew+time.Second, "replica-a stopping", func() bool { return !a.elector.Leading() })
	stopped := time.Since(cut)
	waitFor(itLease+itRenew+time.Second, "replica-b leading", b.elector.Leading)
	t.Logf("replica-a stopped %s after it was cut off; replica-b leads %s after", stopped, time.Since(cut))
	if a.elector.Leading() {
		t.Fatal("both replicas lead")
	}
	waitFor(2*ttl, "the entry refreshed by replica-b", func() bool { return boundAge() < ttl })
	for end := time.Now().Add(3 * ttl); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if age := boundAge(); age > ttl+time.Second {
			t.Fatalf("after the handover the pod-bound entry is %s old, past the TTL %s", age, ttl)
		}
	}

	// The pod goes (no kubelet: grace period 0 removes it at once); so does
	// its entry.
	zero := int64(0)
	if err := admin.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	gone := waitFor(3*ttl, "the pod-bound entry removed after its pod", func() bool { _, ok := entries()["bound.1"]; return !ok })
	t.Logf("entry removed %s after its pod was deleted", gone)
	if _, ok := entries()["alive.3"]; !ok {
		t.Fatal("an entry younger than REGISTRY_GC_AFTER was removed")
	}
}
