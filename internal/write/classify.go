package write

import (
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/acme/registry-api/internal/model"
)

// Classify turns an error of the store into a *model.Error whose code tells
// the client what to do. Conflicts that outlasted the retries are conflict;
// the API server's size limit (422 FieldValueTooLong, 413) is registry_full;
// a namespace that does not exist or another 422 is invalid_request; a request
// the API server could not parse is internal. Everything else (unreachable,
// timeouts, 5xx, 429, refused credentials) is store_unavailable: the request
// may succeed later or on another replica. An error that already carries a
// *model.Error is returned unchanged.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var me *model.Error
	if errors.As(err, &me) {
		return err
	}
	wrap := func(code model.Code, msg string) error {
		return &model.Error{Code: code, Message: msg, Err: err}
	}
	switch {
	case errors.Is(err, errClosed):
		return wrap(model.CodeStoreUnavailable, "registry-api is shutting down; retry")
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err), errors.Is(err, errVanished):
		return wrap(model.CodeConflict, "the registry ConfigMap kept changing under concurrent writers; retry")
	case apierrors.IsRequestEntityTooLargeError(err), apierrors.IsInvalid(err) && hasCause(err, metav1.CauseType(field.ErrorTypeTooLong)):
		return wrap(model.CodeRegistryFull, "the registry ConfigMap would exceed the API server's size limit")
	case apierrors.IsInvalid(err):
		return wrap(model.CodeInvalid, "the API server rejected the registry entry")
	case apierrors.IsNotFound(err):
		if d := details(err); d != nil && d.Kind == "namespaces" {
			return wrap(model.CodeInvalid, "namespace "+d.Name+" does not exist")
		}
		return wrap(model.CodeConflict, "the registry ConfigMap was deleted while writing; retry")
	case apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err):
		return wrap(model.CodeInternal, "the API server could not process registry-api's request")
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		// registry-api's own credentials, not the client's: an operator must act.
		return wrap(model.CodeStoreUnavailable, "registry-api may not write registry ConfigMaps at the moment; retry later")
	default:
		// Timeouts, 5xx, 429, connection errors, context deadlines.
		return wrap(model.CodeStoreUnavailable, "the Kubernetes API server is unavailable; retry later")
	}
}

func details(err error) *metav1.StatusDetails {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return nil
	}
	return status.Status().Details
}

func hasCause(err error, t metav1.CauseType) bool {
	if d := details(err); d != nil {
		for _, c := range d.Causes {
			if c.Type == t {
				return true
			}
		}
	}
	return false
}
