package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// LoadSeedFile reads ConfigMaps in the shapes `kubectl get cm -o yaml|json`
// prints: one object, several `---` documents, or a v1 List. EndpointSlices
// and Pods among them are skipped: they stand in for a cluster's endpoints
// (see endpoints.SeedEndpoints). Errors name the
// file, the document number (from 1) and the reason.
func LoadSeedFile(path string) ([]corev1.ConfigMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seed: %w", err)
	}
	cms, err := ParseSeed(data)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	return cms, nil
}

// ParseSeed parses seed data; see LoadSeedFile.
func ParseSeed(data []byte) ([]corev1.ConfigMap, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []corev1.ConfigMap
	// doc counts non-empty documents only: the YAML reader drops some empty
	// documents (`---` right after `---`) but not others (blank or comment).
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			doc--
			continue // an empty document between separators
		}
		cms, err := decodeSeedObject(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		out = append(out, cms...)
	}
}

func decodeSeedObject(raw []byte) ([]corev1.ConfigMap, error) {
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("not an object: %w", err)
	}
	switch head.Kind {
	case "ConfigMap":
		cm, err := decodeConfigMap(raw)
		if err != nil {
			return nil, err
		}
		return []corev1.ConfigMap{cm}, nil
	case "List", "ConfigMapList":
		out := make([]corev1.ConfigMap, 0, len(head.Items))
		for i, item := range head.Items {
			cm, err := decodeConfigMap(item)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			out = append(out, cm)
		}
		return out, nil
	case "EndpointSlice", "Pod":
		// The demo's stand-in for a cluster's endpoints, read by
		// internal/endpoints (SeedEndpoints); no ConfigMap here.
		return nil, nil
	case "":
		return nil, errors.New("no kind: want ConfigMap, List, EndpointSlice or Pod")
	default:
		return nil, fmt.Errorf("kind %s: want ConfigMap, List, EndpointSlice or Pod", head.Kind)
	}
}

func decodeConfigMap(raw []byte) (corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cm); err != nil {
		return corev1.ConfigMap{}, fmt.Errorf("configmap: %w", err)
	}
	if cm.Kind != "ConfigMap" {
		return corev1.ConfigMap{}, fmt.Errorf("kind %q: want ConfigMap", cm.Kind)
	}
	if cm.APIVersion != "v1" {
		return corev1.ConfigMap{}, fmt.Errorf("configmap %q: apiVersion %q: want v1", cm.Name, cm.APIVersion)
	}
	if cm.Name == "" {
		return corev1.ConfigMap{}, errors.New("configmap has no metadata.name")
	}
	if cm.Namespace == "" {
		return corev1.ConfigMap{}, fmt.Errorf("configmap %q has no metadata.namespace", cm.Name)
	}
	return cm, nil
}
