package export

import (
	"bytes"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Objects are the export's objects as a server-side apply sends them:
// routes, then grants (a route waits for its grant, so order is harmless).
func (g *GatewayAPI) Objects() ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(g.GRPCRoutes)+len(g.ReferenceGrants))
	for i := range g.GRPCRoutes {
		u, err := toUnstructured(&g.GRPCRoutes[i])
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	for i := range g.ReferenceGrants {
		u, err := toUnstructured(&g.ReferenceGrants[i])
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// Objects are the export's objects in apply order: each DestinationRule
// before the VirtualServices whose subsets it defines.
func (s *Istio) Objects() ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(s.DestinationRules)+len(s.VirtualServices))
	for i := range s.DestinationRules {
		u, err := toUnstructured(&s.DestinationRules[i])
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	for i := range s.VirtualServices {
		u, err := toUnstructured(&s.VirtualServices[i])
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// toUnstructured converts a typed object, dropping what a typed object
// always carries and an applied one must not: the status and the null
// creation timestamp.
func toUnstructured(obj any) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %T: %w", obj, err)
	}
	delete(m, "status")
	unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
	return &unstructured.Unstructured{Object: m}, nil
}

// EncodeList writes objs as one JSON "v1 List", which kubectl apply takes
// whole. encoding/json sorts map keys, so the same objects give the same
// bytes.
func EncodeList(objs []*unstructured.Unstructured) ([]byte, error) {
	items := make([]map[string]any, len(objs))
	for i, o := range objs {
		items[i] = o.Object
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Items      []map[string]any `json:"items"`
	}{"v1", "List", items})
	if err != nil {
		return nil, fmt.Errorf("encode export list: %w", err)
	}
	return buf.Bytes(), nil
}
