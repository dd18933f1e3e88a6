package write

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/acme/registry-api/internal/model"
)

func TestClassify(t *testing.T) {
	cms := schema.GroupResource{Resource: "configmaps"}
	cmKind := schema.GroupKind{Kind: "ConfigMap"}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	// The store wraps the API server's errors with context, as the Kube store does.
	wrapped := func(err error) error { return fmt.Errorf("update configmap firefly/ff-registry-prod: %w", err) }

	for _, tc := range []struct {
		name string
		err  error
		want model.Code
	}{
		{"conflict", apierrors.NewConflict(cms, "ff-registry-prod", errors.New("modified")), model.CodeConflict},
		{"already exists", apierrors.NewAlreadyExists(cms, "ff-registry-prod"), model.CodeConflict},
		{"too long", apierrors.NewInvalid(cmKind, "ff-registry-prod", field.ErrorList{field.TooLong(field.NewPath(""), "", 1<<20)}), model.CodeRegistryFull},
		{"entity too large", apierrors.NewRequestEntityTooLargeError("limit is 3145728"), model.CodeRegistryFull},
		{"invalid key", apierrors.NewInvalid(cmKind, "ff-registry-prod", field.ErrorList{field.Invalid(field.NewPath("data").Key("a/b"), "a/b", "a valid config key")}), model.CodeInvalid},
		{"namespace missing", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "nope"), model.CodeInvalid},
		{"configmap deleted", apierrors.NewNotFound(cms, "ff-registry-prod"), model.CodeConflict},
		{"bad request", apierrors.NewBadRequest("cannot decode"), model.CodeInternal},
		{"service unavailable", apierrors.NewServiceUnavailable("etcd down"), model.CodeStoreUnavailable},
		{"timeout", apierrors.NewTimeoutError("request did not complete", 2), model.CodeStoreUnavailable},
		{"server timeout", apierrors.NewServerTimeout(cms, "update", 1), model.CodeStoreUnavailable},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), model.CodeStoreUnavailable},
		{"internal error", apierrors.NewInternalError(errors.New("boom")), model.CodeStoreUnavailable},
		{"forbidden", apierrors.NewForbidden(cms, "ff-registry-prod", errors.New("rbac")), model.CodeStoreUnavailable},
		{"unauthorized", apierrors.NewUnauthorized("token expired"), model.CodeStoreUnavailable},
		{"connection refused", refused, model.CodeStoreUnavailable},
		{"deadline", context.DeadlineExceeded, model.CodeStoreUnavailable},
		{"eof", errors.New("unexpected EOF"), model.CodeStoreUnavailable},
		{"closed", errClosed, model.CodeStoreUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, err := range []error{tc.err, wrapped(tc.err)} {
				got := Classify(err)
				var me *model.Error
				if !errors.As(got, &me) {
					t.Fatalf("Classify(%v) = %T, want *model.Error", err, got)
				}
				if me.Code != tc.want {
					t.Errorf("Classify(%v) code %s, want %s", err, me.Code, tc.want)
				}
				if !errors.Is(got, tc.err) {
					t.Errorf("Classify(%v) lost the original error", err)
				}
				if me.Message == "" {
					t.Errorf("Classify(%v) has no message", err)
				}
			}
		})
	}

	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
	own := fmt.Errorf("context: %w", model.Errorf(model.CodeLeaseNotFound, "gone"))
	if got := Classify(own); got != own {
		t.Errorf("Classify changed an error that already has a code: %v", got)
	}
}
