package write

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/acme/registry-api/internal/model"
)

// errVanished marks an Update that found its ConfigMap deleted since the Get:
// the next attempt creates it again.
var errVanished = errors.New("configmap deleted while writing")

func retriable(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || errors.Is(err, errVanished)
}

// readModifyWrite is every write of a registry ConfigMap: it reads the
// ConfigMap, lets modify change the fresh copy through an applier, and
// writes it if anything changed, guarded by the resourceVersion it read and
// retried on conflict. A missing ConfigMap is created when create is set,
// else left alone. Every attempt reads one clock instant, so that run_date
// says when the change was applied, and shares the lease ids it generated.
// It returns the last attempt's applier (for the size it reached) and the
// ConfigMap as written, nil when nothing changed; OnWritten has it before
// this returns. ctx bounds the whole call.
func (w *Writer) readModifyWrite(ctx context.Context, r ref, create bool, modify func(*applier)) (*applier, *corev1.ConfigMap, error) {
	now := w.opts.Now()
	known := make(identities)
	var (
		ap      *applier
		written *corev1.ConfigMap
	)
	err := retry.OnError(w.opts.Backoff, retriable, func() error {
		ap, written = nil, nil
		if err := ctx.Err(); err != nil {
			return err
		}
		cm, err := w.get(ctx, r)
		missing := apierrors.IsNotFound(err)
		switch {
		case missing && create:
			cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: r.namespace, Name: r.name}}
		case missing:
			return nil
		case err != nil:
			return err
		}
		ap = newApplier(r, cm, w.opts.MaxConfigMapBytes, now, w.opts.Zone, known)
		modify(ap)
		if !ap.changed {
			return nil
		}
		cm.Data = ap.data
		if missing {
			written, err = w.create(ctx, cm)
		} else {
			written, err = w.update(ctx, cm)
		}
		switch {
		case apierrors.IsConflict(err):
			w.m.conflicts.Inc()
		case apierrors.IsNotFound(err):
			err = fmt.Errorf("%w: %w", errVanished, err)
		}
		if err != nil {
			written = nil
		}
		return err
	})
	if err != nil {
		return ap, nil, err
	}
	if written != nil && w.opts.OnWritten != nil {
		w.opts.OnWritten(written)
	}
	return ap, written, nil
}

// get, create and update are the read-modify-write's calls to the API
// server, each bounded by WriteTimeout within ctx.
func (w *Writer) get(ctx context.Context, r ref) (*corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.WriteTimeout)
	defer cancel()
	return w.opts.Store.Get(ctx, r.namespace, r.name)
}

func (w *Writer) create(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.WriteTimeout)
	defer cancel()
	out, err := w.opts.Store.Create(ctx, cm)
	w.m.storeWrites.WithLabelValues("create", storeResult(err)).Inc()
	return out, err
}

func (w *Writer) update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.WriteTimeout)
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
