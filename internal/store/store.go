// Package store is the registry's store of record: ConfigMaps, either in a
// Kubernetes API server or in memory. Both report errors as the API server
// does (k8s.io/apimachinery/pkg/api/errors), so callers classify them once.
package store

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// MaxConfigMapBytes is the API server's limit on a ConfigMap's data.
const MaxConfigMapBytes = 1 << 20

// Store reads and writes ConfigMaps with the API server's semantics:
// per-object resourceVersion, 409 Conflict on a stale one, 1 MiB limit.
type Store interface {
	// List returns the ConfigMaps of namespace, or of all namespaces for "",
	// with the resourceVersion the list was read at: a reader that also
	// knows objects from its own writes needs it to tell an object missing
	// from an older view from one deleted since.
	List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error)
	// ListMeta is List without the data: names and resourceVersions, so
	// that a poll learns what changed without reading what did not.
	ListMeta(ctx context.Context, namespace string) (*metav1.PartialObjectMetadataList, error)
	Get(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	Create(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error)
	// Update replaces cm; a non-empty ResourceVersion must be current.
	Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error)
}

// Kube is a Store backed by a Kubernetes API server.
type Kube struct {
	Client kubernetes.Interface
	// Metadata serves ListMeta.
	Metadata metadata.Interface
}

var _ Store = (*Kube)(nil)

// NewKube returns a Kube store with both clients made from cfg.
func NewKube(cfg *rest.Config) (*Kube, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes metadata client: %w", err)
	}
	return &Kube{Client: client, Metadata: meta}, nil
}

// List asks with resourceVersion=0 so that the API server answers from its
// watch cache instead of a quorum read of etcd: polling every env every few
// seconds must stay cheap for the control plane.
func (k *Kube) List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error) {
	list, err := k.Client.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, fmt.Errorf("list configmaps in %s: %w", namespaceLabel(namespace), err)
	}
	return list, nil
}

// ListMeta asks for PartialObjectMetadata, from the watch cache like List:
// the API server sends each ConfigMap's metadata alone, in protobuf, instead
// of megabytes of entries that a poll at rest would decode to learn nothing.
func (k *Kube) ListMeta(ctx context.Context, namespace string) (*metav1.PartialObjectMetadataList, error) {
	if k.Metadata == nil {
		return nil, errors.New("store: the kube store has no metadata client (use NewKube)")
	}
	list, err := k.Metadata.Resource(corev1.SchemeGroupVersion.WithResource("configmaps")).Namespace(namespace).
		List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return nil, fmt.Errorf("list configmap metadata in %s: %w", namespaceLabel(namespace), err)
	}
	return list, nil
}

// Get reads one ConfigMap from etcd (a quorum read): writes need the latest.
func (k *Kube) Get(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	cm, err := k.Client.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get configmap %s/%s: %w", namespace, name, err)
	}
	return cm, nil
}

// Create creates cm.
func (k *Kube) Create(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	out, err := k.Client.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create configmap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return out, nil
}

// Update replaces cm, guarded by its resourceVersion.
func (k *Kube) Update(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	out, err := k.Client.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update configmap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return out, nil
}

func namespaceLabel(ns string) string {
	if ns == "" {
		return "all namespaces"
	}
	return "namespace " + ns
}
