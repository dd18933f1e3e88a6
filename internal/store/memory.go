package store

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var configMapResource = schema.GroupResource{Resource: "configmaps"}
var configMapKind = schema.GroupKind{Kind: "ConfigMap"}

// Memory is an in-process Store for local runs, demos and tests. It behaves
// like the API server where registry-api depends on it: a resourceVersion
// bumped on every change, 409 on a stale one, key validation and 1 MiB limit.
type Memory struct {
	mu   sync.Mutex
	rv   int64
	objs map[string]*corev1.ConfigMap
}

var _ Store = (*Memory)(nil)

// NewMemory returns a Memory store holding copies of seed.
func NewMemory(seed ...corev1.ConfigMap) (*Memory, error) {
	m := &Memory{objs: make(map[string]*corev1.ConfigMap)}
	for i := range seed {
		cm := seed[i].DeepCopy()
		cm.ResourceVersion = ""
		if cm.Namespace == "" {
			return nil, fmt.Errorf("seed configmap %q has no namespace", cm.Name)
		}
		if _, err := m.Create(context.Background(), cm); err != nil {
			return nil, fmt.Errorf("seed configmap %s/%s: %w", cm.Namespace, cm.Name, err)
		}
	}
	return m, nil
}

func objKey(ns, name string) string { return ns + "/" + name }

// List returns copies, sorted by namespace and name like the API server, at
// the store's current resourceVersion.
func (m *Memory) List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	found := m.sorted(namespace)
	list := &corev1.ConfigMapList{Items: make([]corev1.ConfigMap, len(found))}
	for i, cm := range found {
		cm.DeepCopyInto(&list.Items[i])
	}
	list.ResourceVersion = strconv.FormatInt(m.rv, 10)
	return list, nil
}

// ListMeta is List with the metadata only, as the API server answers a
// request for PartialObjectMetadataList.
func (m *Memory) ListMeta(ctx context.Context, namespace string) (*metav1.PartialObjectMetadataList, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	found := m.sorted(namespace)
	list := &metav1.PartialObjectMetadataList{Items: make([]metav1.PartialObjectMetadata, len(found))}
	for i, cm := range found {
		list.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}
		cm.ObjectMeta.DeepCopyInto(&list.Items[i].ObjectMeta)
	}
	list.ResourceVersion = strconv.FormatInt(m.rv, 10)
	return list, nil
}

// sorted returns the stored ConfigMaps of namespace ("" for all), by
// namespace and name; m.mu is held.
func (m *Memory) sorted(namespace string) []*corev1.ConfigMap {
	out := make([]*corev1.ConfigMap, 0, len(m.objs))
	for _, cm := range m.objs {
		if namespace == "" || cm.Namespace == namespace {
			out = append(out, cm)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Get returns a copy of one ConfigMap.
func (m *Memory) Get(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cm, ok := m.objs[objKey(namespace, name)]
	if !ok {
		return nil, apierrors.NewNotFound(configMapResource, name)
	}
	return cm.DeepCopy(), nil
}

// Create stores a new ConfigMap.
func (m *Memory) Create(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	return m.write(ctx, cm, func(k string, cur *corev1.ConfigMap) (*corev1.ConfigMap, error) {
		if cur != nil {
			return nil, apierrors.NewAlreadyExists(configMapResource, cm.Name)
		}
		return m.put(k, cm), nil
	})
}

// Update replaces a ConfigMap; a set ResourceVersion must be the current one.
func (m *Memory) Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	return m.write(ctx, cm, func(k string, cur *corev1.ConfigMap) (*corev1.ConfigMap, error) {
		if cur == nil {
			return nil, apierrors.NewNotFound(configMapResource, cm.Name)
		}
		if cm.ResourceVersion != "" && cm.ResourceVersion != cur.ResourceVersion {
			return nil, apierrors.NewConflict(configMapResource, cm.Name,
				fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
		}
		if unchanged(cur, cm) {
			// Like the API server: a no-op update writes nothing and keeps the
			// resourceVersion, so pollers see nothing to re-read.
			return cur.DeepCopy(), nil
		}
		return m.put(k, cm), nil
	})
}

// write checks a write of cm as the API server does before it looks at the
// store (the request's context, the data's rules), then applies it with the
// lock held to the ConfigMap of that name; cur is nil when there is none.
func (m *Memory) write(ctx context.Context, cm *corev1.ConfigMap, apply func(k string, cur *corev1.ConfigMap) (*corev1.ConfigMap, error)) (*corev1.ConfigMap, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validate(cm); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := objKey(cm.Namespace, cm.Name)
	return apply(k, m.objs[k])
}

// Delete removes a ConfigMap, as kubectl delete does. registry-api never
// deletes one (it is not part of Store); tests and demos do.
func (m *Memory) Delete(ctx context.Context, namespace, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := objKey(namespace, name)
	if _, ok := m.objs[k]; !ok {
		return apierrors.NewNotFound(configMapResource, name)
	}
	delete(m.objs, k)
	// A deletion is a change: later lists are read after it.
	m.rv++
	return nil
}

func unchanged(cur, next *corev1.ConfigMap) bool {
	return apiequality.Semantic.DeepEqual(cur.Data, next.Data) &&
		apiequality.Semantic.DeepEqual(cur.BinaryData, next.BinaryData) &&
		apiequality.Semantic.DeepEqual(cur.Labels, next.Labels) &&
		apiequality.Semantic.DeepEqual(cur.Annotations, next.Annotations) &&
		apiequality.Semantic.DeepEqual(cur.Immutable, next.Immutable)
}

// put stores a copy under a fresh resourceVersion; m.mu is held.
func (m *Memory) put(k string, cm *corev1.ConfigMap) *corev1.ConfigMap {
	m.rv++
	stored := cm.DeepCopy()
	stored.ResourceVersion = strconv.FormatInt(m.rv, 10)
	if stored.CreationTimestamp.IsZero() {
		stored.CreationTimestamp = metav1.Now()
	}
	m.objs[k] = stored
	return stored.DeepCopy()
}

// validate applies the API server's ConfigMap data rules: its key check, and
// the limit on the total size of the values (keys do not count).
func validate(cm *corev1.ConfigMap) error {
	var errs field.ErrorList
	size := 0
	for key, v := range cm.Data {
		for _, msg := range validation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(field.NewPath("data").Key(key), key, msg))
		}
		size += len(v)
	}
	for key, v := range cm.BinaryData {
		for _, msg := range validation.IsConfigMapKey(key) {
			errs = append(errs, field.Invalid(field.NewPath("binaryData").Key(key), key, msg))
		}
		size += len(v)
	}
	if size > MaxConfigMapBytes {
		errs = append(errs, field.TooLong(field.NewPath(""), "", MaxConfigMapBytes))
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(configMapKind, cm.Name, errs)
	}
	return nil
}
