package write

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/acme/registry-api/internal/model"
)

// ChooseNamespace picks the namespace a write to env goes to. A requested one
// (?namespace=) must be watched, or anything valid when all namespaces are
// watched; it wins. Otherwise the env's one namespace is used, several are
// ambiguous_namespace, and a new env goes to writeDefault.
func ChooseNamespace(snap *model.Snapshot, env, requested, writeDefault string) (string, error) {
	if requested != "" {
		if msgs := validation.IsDNS1123Label(requested); len(msgs) > 0 {
			return "", model.Errorf(model.CodeInvalid, "namespace %q is not a valid namespace name", requested)
		}
		if !snap.Namespaces.Has(requested) {
			return "", model.Errorf(model.CodeInvalid, "namespace %q is not watched by registry-api; watched: %s",
				requested, strings.Join(snap.Namespaces, ", "))
		}
		return requested, nil
	}
	if idx := snap.Envs[env]; idx != nil {
		switch len(idx.Namespaces) {
		case 0:
		case 1:
			return idx.Namespaces[0], nil
		default:
			return "", &model.Error{Code: model.CodeAmbiguousNamespace, Message: fmt.Sprintf(
				"env %s is in namespaces %s; choose one with ?namespace=", env, strings.Join(idx.Namespaces, ", "))}
		}
	}
	if writeDefault == "" {
		return "", model.Errorf(model.CodeInvalid, "env %s is new and registry-api has no default namespace; choose one with ?namespace=", env)
	}
	return writeDefault, nil
}
