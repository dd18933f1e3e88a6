// Package election elects the one replica that does the leader's work (the
// upkeep of entries, route sync) with client-go's leader election over a
// coordination.k8s.io Lease. It knows nothing of that work: it runs a
// function for as long as this replica leads.
package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	sharedmetrics "github.com/acme/registry-api/internal/metrics"
)

// Defaults of Options, those of Kubernetes' own controllers.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Options configure an Elector. The zero value of every field but
// Client, Namespace, Name and Identity is safe.
type Options struct {
	Client kubernetes.Interface
	// Namespace and Name name the coordination.k8s.io Lease.
	Namespace, Name string
	// Identity names this replica; it must be unique among the replicas.
	Identity string
	// LeaseDuration is how long the others wait for a silent leader before
	// taking over; RenewDeadline is how long the leader keeps trying to renew
	// before it gives up leading; RetryPeriod spaces the attempts.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Now is the clock of the renewal watchdog; default time.Now.
	Now func() time.Time
	Log zerolog.Logger
	// Registerer receives the registry_api_leader gauge; nil registers nothing.
	Registerer prometheus.Registerer
}

func (o *Options) validate() error {
	switch {
	case o.Client == nil:
		return errors.New("leader election: no Kubernetes client")
	case o.Namespace == "" || o.Name == "":
		return errors.New("leader election: the Lease needs a namespace and a name")
	case o.Identity == "":
		return errors.New("leader election: no identity")
	}
	var err error
	if o.LeaseDuration, o.RenewDeadline, o.RetryPeriod, err = Timings(o.LeaseDuration, o.RenewDeadline, o.RetryPeriod); err != nil {
		return err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Timings fills in the defaults of zero lease timings and checks them as
// client-go's leaderelection does, and more: the Lease stores whole seconds.
func Timings(lease, renew, retry time.Duration) (time.Duration, time.Duration, time.Duration, error) {
	if lease < 0 || renew < 0 || retry < 0 {
		return 0, 0, 0, errors.New("leader election: lease duration, renew deadline and retry period must not be negative")
	}
	if lease == 0 {
		lease = DefaultLeaseDuration
	}
	if renew == 0 {
		renew = DefaultRenewDeadline
	}
	if retry == 0 {
		retry = DefaultRetryPeriod
	}
	if lease%time.Second != 0 {
		// A fraction would be dropped, and the others would take over
		// earlier than this replica stops.
		return 0, 0, 0, fmt.Errorf("leader election: lease duration %s is not a whole number of seconds", lease)
	}
	if lease <= renew {
		return 0, 0, 0, fmt.Errorf("leader election: lease duration %s must exceed the renew deadline %s", lease, renew)
	}
	if float64(renew) <= leaderelection.JitterFactor*float64(retry) {
		return 0, 0, 0, fmt.Errorf("leader election: renew deadline %s must exceed %.1f times the retry period %s", renew, leaderelection.JitterFactor, retry)
	}
	return lease, renew, retry, nil
}

// Elector runs work on one replica at a time, elected with client-go's
// leaderelection over a Lease.
type Elector struct {
	opts   Options
	log    zerolog.Logger
	leader prometheus.Gauge

	mu      sync.Mutex
	leading bool
}

// New returns an Elector.
func New(opts Options) (*Elector, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "registry_api_leader",
		Help: "1 while this replica leads (runs keepalive and GC), else 0.",
	})
	if opts.Registerer != nil {
		var err error
		if gauge, err = sharedmetrics.Register(opts.Registerer, gauge); err != nil {
			return nil, fmt.Errorf("leader election: metrics: %w", err)
		}
	}
	gauge.Set(0)
	return &Elector{
		opts:   opts,
		log:    opts.Log.With().Str("component", "leader").Str("lease", opts.Namespace+"/"+opts.Name).Str("identity", opts.Identity).Logger(),
		leader: gauge,
	}, nil
}

// Leading reports whether work runs here now.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// Run campaigns until ctx ends. While this replica leads, work runs with a
// context that ends the moment leadership may be lost: when the lease has not
// been renewed for RenewDeadline, which is before any other replica may take
// over (LeaseDuration), and before the lease is given up. Run returns once
// work has returned. On ctx's end the lease is released, so that another
// replica takes over at once.
func (e *Elector) Run(ctx context.Context, work func(context.Context)) {
	for ctx.Err() == nil {
		if err := e.term(ctx, work); err != nil {
			e.log.Error().Err(err).Msg("leader election failed")
			return
		}
	}
}

// term is one campaign: acquire, lead until the lease is lost, stop. A
// leader whose work stops ends its term too (resign), giving the lease up:
// holding it without working would leave the work undone by everyone.
func (e *Elector) term(ctx context.Context, work func(context.Context)) error {
	ctx, resign := context.WithCancel(ctx)
	defer resign()
	lock := &watchedLock{
		Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: e.opts.Namespace, Name: e.opts.Name},
			Client:     e.opts.Client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.opts.Identity},
		},
		now: e.opts.Now,
	}
	var (
		mu      sync.Mutex
		over    bool
		working sync.WaitGroup
	)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            e.opts.Name,
		LeaseDuration:   e.opts.LeaseDuration,
		RenewDeadline:   e.opts.RenewDeadline,
		RetryPeriod:     e.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				// client-go calls this on a goroutine of its own; a term that
				// is already over must not start work behind Run's back.
				mu.Lock()
				if over {
					mu.Unlock()
					return
				}
				working.Add(1)
				mu.Unlock()
				defer working.Done()
				e.lead(lctx, lock, work)
				resign()
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	le.Run(ctx)
	mu.Lock()
	over = true
	mu.Unlock()
	working.Wait()
	return nil
}

// lead runs work until lctx ends or the lease goes unrenewed for too long;
// the caller then resigns.
func (e *Elector) lead(lctx context.Context, lock *watchedLock, work func(context.Context)) {
	wctx, stop := context.WithCancel(lctx)
	defer stop()
	done := make(chan struct{})
	lock.setStop(func() {
		stop()
		<-done
	})
	defer lock.setStop(nil)
	e.setLeading(true)
	e.log.Info().Msg("became the leader: running keepalive and GC")

	go func() {
		defer close(done)
		work(wctx)
	}()
	tick := time.NewTicker(max(e.opts.RetryPeriod/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-done:
			e.stopped("the work returned")
			return
		case <-wctx.Done():
			<-done
			e.stopped("lease lost or released")
			return
		case <-tick.C:
			if since := e.opts.Now().Sub(lock.renewedAt()); since > e.opts.RenewDeadline {
				stop()
				<-done
				e.stopped(fmt.Sprintf("lease not renewed for %s", since.Truncate(time.Millisecond)))
				return
			}
		}
	}
}

func (e *Elector) stopped(why string) {
	e.setLeading(false)
	ev := e.log.Info()
	if why != "" {
		ev = ev.Str("reason", why)
	}
	ev.Msg("stopped leading: keepalive and GC stopped")
}

func (e *Elector) setLeading(on bool) {
	e.mu.Lock()
	e.leading = on
	e.mu.Unlock()
	if on {
		e.leader.Set(1)
	} else {
		e.leader.Set(0)
	}
}

// watchedLock is the Lease lock that tells the leader's watchdog when the
// lease was last renewed, and that stops the work before the lease is given
// up, so that two replicas never work at once.
type watchedLock struct {
	resourcelock.Interface
	now func() time.Time

	mu      sync.Mutex
	renewed time.Time // start of the last successful write that held the lease
	stop    func()    // ends the work and waits for it; nil when none runs
}

func (l *watchedLock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	start := l.now()
	err := l.Interface.Create(ctx, rec)
	l.observe(rec, start, err)
	return err
}

func (l *watchedLock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	if rec.HolderIdentity != l.Identity() {
		// Releasing the lease: the work stops, and has stopped, first.
		l.mu.Lock()
		stop := l.stop
		l.mu.Unlock()
		if stop != nil {
			stop()
		}
	}
	start := l.now()
	err := l.Interface.Update(ctx, rec)
	l.observe(rec, start, err)
	return err
}

// observe notes a successful write that holds the lease. The time is when
// the write started: the lease may count from any moment after it, so the
// watchdog errs on the side of stopping early.
func (l *watchedLock) observe(rec resourcelock.LeaderElectionRecord, start time.Time, err error) {
	if err != nil || rec.HolderIdentity != l.Identity() {
		return
	}
	l.mu.Lock()
	l.renewed = start
	l.mu.Unlock()
}

func (l *watchedLock) renewedAt() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed
}

func (l *watchedLock) setStop(stop func()) {
	l.mu.Lock()
	l.stop = stop
	l.mu.Unlock()
}
