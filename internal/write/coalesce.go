package write

import (
	"context"
	"time"

	"github.com/acme/registry-api/internal/model"
)

type opKind int

const (
	opRegister opKind = iota
	opHeartbeat
	opDeregister
	opRegisterVersion
)

func (k opKind) String() string {
	switch k {
	case opRegister:
		return "register"
	case opHeartbeat:
		return "heartbeat"
	case opRegisterVersion:
		return "register_version"
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
		b.first = w.opts.Now()
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
	d := max(0, w.opts.BatchWindow-w.opts.Now().Sub(b.first))
	if w.closed {
		d = 0
	}
	w.arm(b, d) // before the deferred Done, so that Close keeps waiting
}

// write applies ops to the ConfigMap in one read-modify-write, creating it
// if missing, and answers each op.
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

	// The callers' contexts end their wait, not the write: once begun, it
	// finishes and is applied, so that an answer is never a guess.
	last, written, err := w.readModifyWrite(context.Background(), r, true, func(ap *applier) {
		for _, o := range live {
			o.res, o.err = Result{}, nil
			ap.apply(o)
			if o.err == nil {
				o.res.Namespace = r.namespace
				o.res.HeartbeatInterval = w.opts.TTL / 2
			}
		}
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
