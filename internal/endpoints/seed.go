package endpoints

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/acme/registry-api/internal/model"
)

// SeedEndpoints reads the EndpointSlices and Pods of a seed file (the
// memory store's, `make run`) as the informers would read them from a
// cluster: the stand-in for a cluster's endpoints, so that the demo holds
// version registrations that are alive. Other kinds are left to the store.
func SeedEndpoints(data []byte) (model.Endpoints, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	bySvc := make(map[model.ServiceRef][]*discoveryv1.EndpointSlice)
	versions := make(map[string]string) // namespace/pod -> version label
	for doc := 1; ; doc++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		var head metav1.TypeMeta
		if len(bytes.TrimSpace(raw)) == 0 || json.Unmarshal(raw, &head) != nil {
			continue
		}
		switch head.Kind {
		case "EndpointSlice":
			var es discoveryv1.EndpointSlice
			if err := json.Unmarshal(raw, &es); err != nil {
				return nil, fmt.Errorf("document %d: endpointslice: %w", doc, err)
			}
			name := es.Labels[discoveryv1.LabelServiceName]
			if name == "" || es.Namespace == "" {
				return nil, fmt.Errorf("document %d: endpointslice %q names no namespace or no %s label", doc, es.Name, discoveryv1.LabelServiceName)
			}
			svc := model.ServiceRef{Namespace: es.Namespace, Name: name}
			bySvc[svc] = append(bySvc[svc], &es)
		case "Pod":
			var p metav1.PartialObjectMetadata
			if err := json.Unmarshal(raw, &p); err != nil {
				return nil, fmt.Errorf("document %d: pod: %w", doc, err)
			}
			versions[p.Namespace+"/"+p.Name] = p.Labels[VersionLabel]
		}
	}
	out := make(model.Endpoints, len(bySvc))
	for svc, found := range bySvc {
		out[svc] = Of(found, func(pod string) string { return versions[svc.Namespace+"/"+pod] })
	}
	return out, nil
}
