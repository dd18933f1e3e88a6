// Package registry is the registry's write path: it registers, heartbeats and
// deregisters instances in the registry ConfigMaps. Every write is a
// read-modify-write guarded by the resourceVersion, so entries of other
// writers (other replicas, the Go library) are never lost; concurrent writes
// to one ConfigMap are coalesced into one Get and one Update.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
)

// Defaults of Options; DefaultBatchWindow is the service's default for
// REGISTRY_WRITE_BATCH_WINDOW (the zero Options do not coalesce).
const (
	DefaultBatchWindow       = 100 * time.Millisecond
	DefaultMaxConfigMapBytes = 900 << 10
	DefaultWriteTimeout      = 5 * time.Second
	DefaultTTL               = 10 * time.Second
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
	// MaxConfigMapBytes refuses registrations beyond it; default 900 KiB,
	// leaving headroom under the API server's 1 MiB for heartbeats and for
	// other writers.
	MaxConfigMapBytes int
	// WriteTimeout bounds each API server call; default 5s.
	WriteTimeout time.Duration
	// Backoff spaces retries after a conflict; the zero value is DefaultBackoff.
	Backoff wait.Backoff
	// Now is the clock for run_date and generated lease ids; default time.Now.
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
		o.TTL = DefaultTTL
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
}

// ownedMembers are the entry members a registration writes; anything else in
// an existing entry belongs to another writer and is kept.
var ownedMembers = []string{"proto_count", "lease_id", "run_date", "methods", "network", "kernel", "meta"}

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
		if k == "" || slices.Contains(ownedMembers, k) {
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
		o.leaseID = w.opts.Now().UnixNano()
	}
	return w.do(ctx, newRef(r.Namespace, r.Env), o)
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

type opKind int

const (
	opRegister opKind = iota
	opHeartbeat
	opDeregister
)

func (k opKind) String() string {
	switch k {
	case opRegister:
		return "register"
	case opHeartbeat:
		return "heartbeat"
	default:
		return "deregister"
	}
}

// op is one caller's operation. The writing goroutine sets res and err, then
// closes done; the caller reads them only after done.
type op struct {
	ctx      context.Context
	kind     opKind
	appID    string
	leaseID  int64
	generate bool
	reg      *Registration
	guards   []Guard
	memo     memo

	res  Result
	err  error
	done chan struct{}
}

func newOp(ctx context.Context, kind opKind, appID string, leaseID int64, guards []Guard) *op {
	return &op{ctx: ctx, kind: kind, appID: appID, leaseID: leaseID, generate: kind == opRegister && leaseID == 0,
		guards: guards, done: make(chan struct{})}
}

// allowed runs o's guards on the entry it would change (nil: none).
func (o *op) allowed(existing []byte) error {
	for _, g := range o.guards {
		if g == nil {
			continue
		}
		if err := g(existing); err != nil {
			return err
		}
	}
	return nil
}

// cmKey names one ConfigMap; ref adds the env it holds.
type cmKey struct{ namespace, name string }

type ref struct {
	cmKey
	env string
}

func newRef(namespace, env string) ref {
	return ref{cmKey{namespace, model.ConfigMapName(env)}, env}
}

// batcher collects the operations on one ConfigMap. It exists while it has
// pending operations, an armed timer or a write in flight; at most one write
// per ConfigMap runs at a time, so this replica never conflicts with itself.
type batcher struct {
	ref      ref
	pending  []*op
	first    time.Time // arrival of pending[0]
	timer    *time.Timer
	flushing bool
}

func (w *Writer) do(ctx context.Context, r ref, o *op) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if err := w.enqueue(r, o); err != nil {
		w.m.ops.WithLabelValues(o.kind.String(), string(model.ErrorCode(err))).Inc()
		return Result{}, err
	}
	select {
	case <-o.done:
		return o.res, o.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

func (w *Writer) enqueue(r ref, o *op) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Classify(errClosed)
	}
	if w.opts.BatchWindow == 0 {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.write(r, []*op{o})
		}()
		return nil
	}
	b := w.batchers[r.cmKey]
	if b == nil {
		b = &batcher{ref: r}
		w.batchers[r.cmKey] = b
	}
	if len(b.pending) == 0 {
		b.first = time.Now()
	}
	b.pending = append(b.pending, o)
	if !b.flushing && b.timer == nil {
		w.arm(b, w.opts.BatchWindow)
	}
	return nil
}

// arm schedules b's flush; w.mu is held.
func (w *Writer) arm(b *batcher, d time.Duration) {
	w.wg.Add(1)
	b.timer = time.AfterFunc(d, func() { w.flush(b) })
}

// flush writes b's pending operations, then re-arms b for those that arrived
// meanwhile or retires it. It owns one count of w.wg.
func (w *Writer) flush(b *batcher) {
	defer w.wg.Done()
	w.mu.Lock()
	b.timer = nil
	ops := b.pending
	b.pending = nil
	b.flushing = true
	w.mu.Unlock()

	w.write(b.ref, ops)

	w.mu.Lock()
	defer w.mu.Unlock()
	b.flushing = false
	if len(b.pending) == 0 {
		delete(w.batchers, b.ref.cmKey)
		return
	}
	// The window runs from the first pending operation's arrival, the write
	// it waited through included.
	d := max(0, w.opts.BatchWindow-time.Since(b.first))
	if w.closed {
		d = 0
	}
	w.arm(b, d) // before the deferred Done, so that Close keeps waiting
}

// write applies ops to the ConfigMap in one Get and one Update (or Create),
// retried on conflict, and answers each op.
func (w *Writer) write(r ref, ops []*op) {
	live := make([]*op, 0, len(ops))
	for _, o := range ops {
		if err := o.ctx.Err(); err != nil {
			// Its caller has been answered ctx.Err(); leave the store alone.
			w.answer(o, Result{}, err, "canceled")
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	w.m.batchSize.Observe(float64(len(live)))

	// One clock reading per write: run_date says when the operations were
	// applied, and a retry can reuse what it computed before.
	now := w.opts.Now()
	known := make(identities)
	var (
		written *corev1.ConfigMap
		last    *applier
	)
	err := retry.OnError(w.opts.Backoff, retriable, func() error {
		var err error
		last, written, err = w.attempt(r, live, now, known)
		if apierrors.IsConflict(err) {
			w.m.conflicts.Inc()
		}
		return err
	})
	if err != nil {
		cerr := w.classify(r, last, err)
		w.log.Warn().Err(err).Str("namespace", r.namespace).Str("configmap", r.name).
			Int("ops", len(live)).Str("code", string(model.ErrorCode(cerr))).Msg("registry write failed")
		for _, o := range live {
			if o.err == nil {
				o.err = cerr
				o.res = Result{}
			}
		}
	} else if written != nil && w.opts.OnWritten != nil {
		w.opts.OnWritten(written)
	}
	for _, o := range live {
		result := "ok"
		if o.err != nil {
			result = string(model.ErrorCode(o.err))
		}
		w.answer(o, o.res, o.err, result)
	}
	w.log.Debug().Str("namespace", r.namespace).Str("configmap", r.name).Int("ops", len(live)).
		Bool("updated", written != nil).Msg("registry write")
}

func (w *Writer) answer(o *op, res Result, err error, result string) {
	o.res, o.err = res, err
	w.m.ops.WithLabelValues(o.kind.String(), result).Inc()
	close(o.done)
}

// errVanished marks an Update that found its ConfigMap deleted since the Get:
// the next attempt creates it again.
var errVanished = errors.New("configmap deleted while writing")

func retriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || errors.Is(err, errVanished)
}

// attempt is one read-modify-write: it reads the ConfigMap, applies ops to
// the fresh copy and writes it if anything changed. It returns the applier
// (for the resulting size) and the ConfigMap as written, nil when unchanged.
func (w *Writer) attempt(r ref, ops []*op, now time.Time, known identities) (*applier, *corev1.ConfigMap, error) {
	for _, o := range ops {
		o.res, o.err = Result{}, nil
	}
	cm, err := w.get(r)
	create := false
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.namespace, Name: r.name}}
		create = true
	case err != nil:
		return nil, nil, err
	}
	ap := newApplier(r, cm, w.opts.MaxConfigMapBytes, now, w.opts.Zone, known)
	for _, o := range ops {
		ap.apply(o)
		if o.err == nil {
			o.res.Namespace = r.namespace
			o.res.HeartbeatInterval = w.opts.TTL / 2
		}
	}
	if !ap.changed {
		return ap, nil, nil
	}
	cm.Data = ap.data
	if create {
		out, err := w.create(cm)
		return ap, out, err
	}
	out, err := w.update(cm)
	if apierrors.IsNotFound(err) {
		err = fmt.Errorf("%w: %w", errVanished, err)
	}
	return ap, out, err
}

func (w *Writer) get(r ref) (*corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.WriteTimeout)
	defer cancel()
	return w.opts.Store.Get(ctx, r.namespace, r.name)
}

func (w *Writer) create(cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.WriteTimeout)
	defer cancel()
	out, err := w.opts.Store.Create(ctx, cm)
	w.m.storeWrites.WithLabelValues("create", storeResult(err)).Inc()
	return out, err
}

func (w *Writer) update(cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.opts.WriteTimeout)
	defer cancel()
	out, err := w.opts.Store.Update(ctx, cm)
	w.m.storeWrites.WithLabelValues("update", storeResult(err)).Inc()
	return out, err
}

func storeResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case apierrors.IsConflict(err):
		return "conflict"
	case apierrors.IsAlreadyExists(err):
		return "already_exists"
	default:
		return string(model.ErrorCode(Classify(err)))
	}
}

// classify turns the error of a whole write into what its callers see,
// naming the ConfigMap.
func (w *Writer) classify(r ref, ap *applier, err error) error {
	e := model.ErrorCode(Classify(err))
	var msg string
	switch e {
	case model.CodeRegistryFull:
		size := 0
		if ap != nil {
			size = ap.size
		}
		msg = fmt.Sprintf("the API server refused registry ConfigMap %s of env %s in namespace %s at %d bytes of data: the env holds too many instances", r.name, r.env, r.namespace, size)
	case model.CodeConflict:
		msg = fmt.Sprintf("registry ConfigMap %s in namespace %s kept changing under concurrent writers; retry", r.name, r.namespace)
	default:
		var me *model.Error
		errors.As(Classify(err), &me)
		msg = fmt.Sprintf("%s (writing ConfigMap %s in namespace %s)", me.Message, r.name, r.namespace)
	}
	return &model.Error{Code: e, Message: msg, Err: err}
}
