package election

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/acme/registry-api/internal/testkit"
)

// The tests run in synctest bubbles, so that lease timings run on the
// bubble's clock: waiting out a lease costs no real time, and a wait that
// asserts that nothing happens is exact. The Lease stores whole seconds.
const (
	testLease   = 2 * time.Second
	testRenew   = 1000 * time.Millisecond
	testRetry   = 200 * time.Millisecond
	testTimeout = 15 * time.Second
)

// workLog records which replica works when, and how many at once.
type workLog struct {
	active, most atomic.Int64
	mu           sync.Mutex
	starts       map[string]int
	stops        map[string]time.Time
}

func (l *workLog) work(id string) func(context.Context) {
	return func(ctx context.Context) {
		n := l.active.Add(1)
		for {
			m := l.most.Load()
			if n <= m || l.most.CompareAndSwap(m, n) {
				break
			}
		}
		l.mu.Lock()
		l.starts[id]++
		l.mu.Unlock()
		<-ctx.Done()
		l.mu.Lock()
		l.stops[id] = time.Now()
		l.mu.Unlock()
		l.active.Add(-1)
	}
}

func (l *workLog) started(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.starts[id]
}

func (l *workLog) stoppedAt(id string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stops[id]
}

type replica struct {
	id      string
	elector *Elector
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan struct{}
}

func startReplica(t *testing.T, cs kubernetes.Interface, id string, log *workLog) *replica {
	t.Helper()
	r := &replica{id: id, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	var err error
	r.elector, err = New(Options{
		Client: cs, Namespace: "registry", Name: "registry-api-upkeep", Identity: id,
		LeaseDuration: testLease, RenewDeadline: testRenew, RetryPeriod: testRetry,
		Registerer: r.reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.elector.Run(ctx, log.work(id))
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

func (r *replica) gauge(t *testing.T) float64 {
	t.Helper()
	return testutil.ToFloat64(r.elector.leader)
}

func TestElectorOneLeaderAndHandoverOnStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := fake.NewClientset()
		log := &workLog{starts: map[string]int{}, stops: map[string]time.Time{}}
		a := startReplica(t, cs, "a", log)
		testkit.WaitFor(t, testTimeout, "a leading", testkit.Until(a.elector.Leading))
		b := startReplica(t, cs, "b", log)
		// b campaigns for a while and must not lead meanwhile.
		time.Sleep(2 * testLease)
		if b.elector.Leading() || log.started("b") != 0 {
			t.Fatal("b leads while a holds the lease")
		}
		if a.gauge(t) != 1 || b.gauge(t) != 0 {
			t.Errorf("registry_api_leader: a %v, b %v", a.gauge(t), b.gauge(t))
		}

		// Stopping a releases the lease: b takes over well within the lease duration.
		stopped := time.Now()
		a.stop()
		if a.elector.Leading() || a.gauge(t) != 0 {
			t.Error("a still reports leading after it stopped")
		}
		took := testkit.WaitFor(t, testLease, "b leading after a stopped", testkit.Until(b.elector.Leading))
		t.Logf("b took over %s after a stopped", took)
		if at := log.stoppedAt("a"); at.IsZero() || at.After(stopped.Add(took)) {
			t.Error("a's work had not stopped when b started")
		}
		if log.most.Load() != 1 {
			t.Errorf("%d replicas worked at once", log.most.Load())
		}
	})
}

// A leader that is cut off from the API server, so that it can neither renew
// nor release its lease, stops its work by the renew deadline, before anyone
// else may take over; the other replica takes over once the lease expires.
func TestElectorStopsWorkWhenRenewalFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		shared := fake.NewClientset()
		var cutOff atomic.Bool
		// a reaches the same objects as b, until it is cut off.
		csA := &fake.Clientset{}
		csA.AddReactor("*", "*", func(action k8stesting.Action) (bool, runtime.Object, error) {
			if cutOff.Load() {
				return true, nil, errors.New("connection refused")
			}
			return k8stesting.ObjectReaction(shared.Tracker())(action)
		})
		log := &workLog{starts: map[string]int{}, stops: map[string]time.Time{}}
		a := startReplica(t, csA, "a", log)
		testkit.WaitFor(t, testTimeout, "a leading", testkit.Until(a.elector.Leading))
		b := startReplica(t, shared, "b", log)

		cut := time.Now()
		cutOff.Store(true)
		testkit.WaitFor(t, testRenew+time.Second, "a stopping its work", testkit.Until(func() bool { return !a.elector.Leading() }))
		stoppedAfter := log.stoppedAt("a").Sub(cut)
		if stoppedAfter > testRenew+testRetry {
			t.Errorf("a stopped working %s after it was cut off, later than the renew deadline %s", stoppedAfter, testRenew)
		}
		// b waits out the lease from when it last saw it change, polling every
		// retry period (jittered up to 2.2 times).
		testkit.WaitFor(t, testLease+testRenew+3*testRetry, "b leading", testkit.Until(b.elector.Leading))
		tookOver := time.Since(cut)
		t.Logf("a stopped %s after the cut, b led %s after it", stoppedAfter, tookOver)
		if tookOver < stoppedAfter+(testLease-testRenew)/2 {
			t.Errorf("b led %s after the cut, too close to a stopping (%s): the margin is the lease duration less the renew deadline", tookOver, stoppedAfter)
		}
		if log.most.Load() != 1 {
			t.Errorf("%d replicas worked at once", log.most.Load())
		}
		if a.gauge(t) != 0 || b.gauge(t) != 1 {
			t.Errorf("registry_api_leader: a %v, b %v", a.gauge(t), b.gauge(t))
		}
		lease, err := shared.CoordinationV1().Leases("registry").Get(t.Context(), "registry-api-upkeep", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if h := lease.Spec.HolderIdentity; h == nil || *h != "b" {
			t.Errorf("lease holder %v, want b", h)
		}
	})
}

func TestNewRejects(t *testing.T) {
	cs := fake.NewClientset()
	for _, o := range []Options{
		{Namespace: "n", Name: "l", Identity: "i"},
		{Client: cs, Name: "l", Identity: "i"},
		{Client: cs, Namespace: "n", Identity: "i"},
		{Client: cs, Namespace: "n", Name: "l"},
		{Client: cs, Namespace: "n", Name: "l", Identity: "i", LeaseDuration: time.Second, RenewDeadline: time.Second},
		{Client: cs, Namespace: "n", Name: "l", Identity: "i", RenewDeadline: time.Second, RetryPeriod: time.Second},
		{Client: cs, Namespace: "n", Name: "l", Identity: "i", LeaseDuration: 1500 * time.Millisecond, RenewDeadline: time.Second},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// A leader whose renewals are slow stops its work when the lease has gone
// unrenewed for the renew deadline; it then gives the lease up and campaigns
// again, rather than keep holding a lease it does no work under.
func TestElectorResignsWhenItStopsWorking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cs := fake.NewClientset()
		var slow atomic.Bool
		cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
			if slow.Load() {
				time.Sleep(testRenew + testRetry)
			}
			return false, nil, nil
		})
		log := &workLog{starts: map[string]int{}, stops: map[string]time.Time{}}
		a := startReplica(t, cs, "a", log)
		testkit.WaitFor(t, testTimeout, "a leading", testkit.Until(a.elector.Leading))

		slow.Store(true)
		testkit.WaitFor(t, testRenew+2*testRetry+time.Second, "a stopping its work", testkit.Until(func() bool { return !a.elector.Leading() }))
		slow.Store(false)
		testkit.WaitFor(t, testLease+testRenew+time.Second, "a leading and working again", testkit.Until(func() bool {
			return a.elector.Leading() && log.started("a") >= 2
		}))
		if log.active.Load() != 1 {
			t.Errorf("%d workers after a leads again", log.active.Load())
		}
	})
}
