// Package registry is the registry's write path: it registers, heartbeats and
// deregisters instances in the registry ConfigMaps. Every write is a
// read-modify-write guarded by the resourceVersion, so entries of other
// writers (other replicas, the Go library) are never lost; concurrent writes
// to one ConfigMap are coalesced into one Get and one Update.
//
// Options.OnWritten is the one edge against the flow API server -> poller ->
// snapshot -> handlers: it hands each written ConfigMap to the poller
// (watch.Poller.Apply), so that a replica reads its own writes at once.
package write

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
)

// Defaults of Options; DefaultBatchWindow is the service's default for
// REGISTRY_WRITE_BATCH_WINDOW (the zero Options do not coalesce).
const (
	DefaultBatchWindow       = 100 * time.Millisecond
	DefaultMaxConfigMapBytes = 900 << 10
	DefaultWriteTimeout      = 5 * time.Second
)

// DefaultBackoff spaces the retries after a 409. The jitter keeps replicas
// that lost the same race from colliding again in lockstep; about ten tries
// over up to 1.5 s outlast a burst of heartbeats from other writers.
var DefaultBackoff = wait.Backoff{Steps: 10, Duration: 10 * time.Millisecond, Factor: 1.5, Jitter: 1.0}

// Options configure a Writer. The zero value of every field but Store is safe.
type Options struct {
	Store store.Store
	// Zone is the zone run_date is written in (REGISTRY_RUN_DATE_ZONE); nil is UTC.
	Zone *time.Location
	// TTL is the liveness window; results advise heartbeats every TTL/2.
	TTL time.Duration
	// BatchWindow is how long the first write to a ConfigMap waits for others
	// to share its Get and Update. 0 writes every operation on its own.
	BatchWindow time.Duration
	// MaxConfigMapBytes refuses registrations beyond it; zero means the
	// package default (DefaultMaxConfigMapBytes), which leaves headroom
	// under the API server's 1 MiB for heartbeats and for other writers.
	MaxConfigMapBytes int
	// WriteTimeout bounds each API server call; zero means the package
	// default (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// Backoff spaces retries after a conflict; the zero value is DefaultBackoff.
	Backoff wait.Backoff
	// Now is the clock for run_date, generated lease ids and the batch
	// window; default time.Now.
	Now func() time.Time
	Log zerolog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// OnWritten receives every ConfigMap the API server returned from a write,
	// before the callers are answered, so that reads see their own writes.
	OnWritten func(*corev1.ConfigMap)
}

func (o *Options) validate() error {
	if o.Store == nil {
		return errors.New("registry: no store")
	}
	if o.BatchWindow < 0 {
		return fmt.Errorf("registry: batch window %s is negative", o.BatchWindow)
	}
	if o.MaxConfigMapBytes < 0 || o.MaxConfigMapBytes > store.MaxConfigMapBytes {
		return fmt.Errorf("registry: max configmap bytes %d is outside 1..%d", o.MaxConfigMapBytes, store.MaxConfigMapBytes)
	}
	if o.MaxConfigMapBytes == 0 {
		o.MaxConfigMapBytes = DefaultMaxConfigMapBytes
	}
	if o.Zone == nil {
		o.Zone = time.UTC
	}
	if o.TTL <= 0 {
		o.TTL = model.DefaultTTL
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Backoff == (wait.Backoff{}) {
		o.Backoff = DefaultBackoff
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Writer applies registrations, heartbeats and deregistrations to the store.
// It is safe for concurrent use. A caller is answered once the Update that
// carries its change has succeeded, or with its own error. When the caller's
// ctx ends first it gets ctx.Err(), yet its change may still be written: it
// may already be on its way, shared with other callers. An operation whose
// ctx has ended before its write starts is dropped.
type Writer struct {
	opts Options
	log  zerolog.Logger
	m    *metrics

	mu       sync.Mutex
	closed   bool
	batchers map[cmKey]*batcher
	// wg counts armed timers and running writes, so that Close can wait.
	wg sync.WaitGroup
	// lastLease is the highest lease id this writer has handed out. Ids only
	// grow, so a replica never hands a freed id to another instance, even
	// when its clock reads the same instant twice or steps back.
	lastLease atomic.Int64
}

// New returns a Writer.
func New(opts Options) (*Writer, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("registry: metrics: %w", err)
	}
	return &Writer{
		opts:     opts,
		log:      opts.Log.With().Str("component", "registry").Logger(),
		m:        m,
		batchers: make(map[cmKey]*batcher),
	}, nil
}

// Registration is one instance as a client registers it.
type Registration struct {
	Namespace, Env, AppID string
	// LeaseID names the instance; 0 asks for one (see Writer.Register).
	LeaseID    int64
	Version    string
	Network    model.Network
	Methods    []string // full names with the leading slash
	Kernel     model.Kernel
	ProtoCount int
	// Extra are top-level members written next to the library's, for
	// registry-api's own bookkeeping; the library ignores them.
	Extra map[string]json.RawMessage
}

// Result is an instance's entry as written.
type Result struct {
	Namespace string
	Key       string
	LeaseID   int64
	// Node is the entry as readers will parse it.
	Node *model.Node
	// Raw is the entry's value in the ConfigMap.
	Raw []byte
	// HeartbeatInterval is how often the instance should heartbeat: TTL/2.
	HeartbeatInterval time.Duration
	// Created says that no entry of the instance was there before.
	Created bool
	// Unchanged says that a version registration found its entry as it
	// would write it, but for run_date, and wrote nothing.
	Unchanged bool
}

func (r *Registration) validate() error {
	if err := validateTarget(r.Namespace, r.Env, r.AppID); err != nil {
		return err
	}
	if r.LeaseID < 0 {
		return model.Errorf(model.CodeInvalid, "lease id %d is negative", r.LeaseID)
	}
	for _, m := range r.Methods {
		if !model.ValidMethodName(m) {
			return model.Errorf(model.CodeMalformedMethod, "method %q is not a full gRPC method name like /package.Service/Method", m)
		}
	}
	for k, v := range r.Extra {
		if k == "" || model.IsLibraryMember(k) {
			return model.Errorf(model.CodeInvalid, "extra member %q is empty or one of the entry's own members", k)
		}
		if !json.Valid(v) {
			return model.Errorf(model.CodeInvalid, "extra member %q is not valid JSON", k)
		}
	}
	return nil
}

func validateTarget(namespace, env, appID string) error {
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return model.Errorf(model.CodeInvalid, "namespace %q is not a valid namespace name", namespace)
	}
	if !model.ValidEnv(env) {
		return model.Errorf(model.CodeInvalid, "env %q would not make a valid ConfigMap name", env)
	}
	if !model.ValidAppID(appID) {
		return model.Errorf(model.CodeInvalid, "app id %q is not a DNS-1123 label", appID)
	}
	return nil
}

func validateLease(namespace, env, appID string, leaseID int64) error {
	if err := validateTarget(namespace, env, appID); err != nil {
		return err
	}
	if leaseID <= 0 {
		return model.Errorf(model.CodeInvalid, "lease id %d is not positive", leaseID)
	}
	return nil
}

// Register writes the instance's entry under <appId>.<leaseId>, creating the
// env's ConfigMap when absent. Registering an existing lease rewrites the
// members the registration owns and keeps every other member; an entry of the
// same instance under another key moves to the canonical one. With LeaseID 0
// a lease id is chosen as the library does (the clock in nanoseconds), moved
// on until it names no entry of the app in the ConfigMap. A registration that
// would take the ConfigMap past MaxConfigMapBytes fails with registry_full.
// Every guard must allow the write (see Guard).
func (w *Writer) Register(ctx context.Context, r Registration, guards ...Guard) (Result, error) {
	if err := r.validate(); err != nil {
		w.m.ops.WithLabelValues(opRegister.String(), string(model.ErrorCode(err))).Inc()
		return Result{}, err
	}
	r.Methods = slices.Clone(r.Methods)
	o := newOp(ctx, opRegister, r.AppID, r.LeaseID, guards)
	o.reg = &r
	if o.generate {
		// The caller's own moment, so that registrations sharing a write do
		// not all start from the same id.
		o.leaseID = w.nextLease(w.opts.Now().UnixNano())
	}
	res, err := w.do(ctx, newRef(r.Namespace, r.Env), o)
	if o.generate && err == nil {
		// The write may have moved past ids the ConfigMap already held.
		w.recordLease(res.LeaseID)
	}
	return res, err
}

// RegisterVersion writes the version registration of r.Version of r.AppID:
// one entry under the lease id every replica derives alike
// (model.VersionLeaseID), which r.LeaseID must be, or 0. Its Extra should
// carry keepalive "service" (model.KeepaliveService). Sent again unchanged,
// by every pod of a rollout, it writes nothing (Result.Unchanged); a changed
// body rewrites the one entry. Otherwise it is Register.
func (w *Writer) RegisterVersion(ctx context.Context, r Registration, guards ...Guard) (Result, error) {
	lease := model.VersionLeaseID(r.AppID, r.Version)
	err := r.validate()
	switch {
	case err != nil:
	case !model.ValidVersion(r.Version):
		err = model.Errorf(model.CodeInvalid, "version %q is not a Kubernetes label value, as the pods' version label must be", r.Version)
	case r.LeaseID != 0 && r.LeaseID != lease:
		err = model.Errorf(model.CodeInvalid, "lease id %d is not the one of version %s of app %s (%d)", r.LeaseID, r.Version, r.AppID, lease)
	}
	if err != nil {
		w.m.ops.WithLabelValues(opRegisterVersion.String(), string(model.ErrorCode(err))).Inc()
		return Result{}, err
	}
	r.LeaseID = lease
	r.Methods = slices.Clone(r.Methods)
	o := newOp(ctx, opRegisterVersion, r.AppID, lease, guards)
	o.reg = &r
	return w.do(ctx, newRef(r.Namespace, r.Env), o)
}

// nextLease returns a lease id of at least from and above every id this
// writer has handed out, and records it as handed out.
func (w *Writer) nextLease(from int64) int64 {
	for {
		last := w.lastLease.Load()
		if from <= last {
			from = last + 1
		}
		if w.lastLease.CompareAndSwap(last, from) {
			return from
		}
	}
}

// recordLease notes id as handed out.
func (w *Writer) recordLease(id int64) {
	for {
		last := w.lastLease.Load()
		if id <= last || w.lastLease.CompareAndSwap(last, id) {
			return
		}
	}
}

// Heartbeat rewrites only the run_date of the instance's entry. An entry that
// is gone (deregistered, cleaned up, or unreadable) fails with
// lease_not_found: the instance must register again. Every guard must allow
// the write (see Guard).
func (w *Writer) Heartbeat(ctx context.Context, namespace, env, appID string, leaseID int64, guards ...Guard) (Result, error) {
	if err := validateLease(namespace, env, appID, leaseID); err != nil {
		w.m.ops.WithLabelValues(opHeartbeat.String(), string(model.ErrorCode(err))).Inc()
		return Result{}, err
	}
	return w.do(ctx, newRef(namespace, env), newOp(ctx, opHeartbeat, appID, leaseID, guards))
}

// Deregister removes the instance's entries; an absent one is no error.
// Every guard must allow the write (see Guard).
func (w *Writer) Deregister(ctx context.Context, namespace, env, appID string, leaseID int64, guards ...Guard) error {
	if err := validateLease(namespace, env, appID, leaseID); err != nil {
		w.m.ops.WithLabelValues(opDeregister.String(), string(model.ErrorCode(err))).Inc()
		return err
	}
	_, err := w.do(ctx, newRef(namespace, env), newOp(ctx, opDeregister, appID, leaseID, guards))
	return err
}

// Guard decides, on the fresh copy a write replaces, whether the write may
// change the entry: existing is the entry's current value, nil when there is
// none. An error refuses that operation alone and is its answer; the other
// operations of the same write go ahead. Guards run on every attempt, so a
// change of the entry between attempts is judged again.
type Guard func(existing []byte) error

// Close writes what is pending at once, waits for every write in flight and
// refuses later operations with store_unavailable, so that a client retries
// against another replica. Its wait is bounded by the conflict backoff and
// WriteTimeout per API server call.
func (w *Writer) Close() {
	w.mu.Lock()
	w.closed = true
	for _, b := range w.batchers {
		if b.timer != nil && b.timer.Stop() {
			// The stopped timer's share of wg passes to this flush.
			b.timer = nil
			go w.flush(b)
		}
	}
	w.mu.Unlock()
	w.wg.Wait()
}

var errClosed = errors.New("registry writer is closed")
