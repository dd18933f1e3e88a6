package routesync

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GatewayAPIKinds are what REGISTRY_SYNC_GRPCROUTES keeps: the routes and
// the grants that let them reach Services in other namespaces.
func GatewayAPIKinds() []Kind {
	return []Kind{
		{Name: "GRPCRoute", GVR: schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "grpcroutes"},
			Routes: grpcRouteMethods},
		{Name: "ReferenceGrant", GVR: schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "referencegrants"},
			Routes: func(o *unstructured.Unstructured) []string { return names(o, "to") }},
	}
}

// IstioKinds are what REGISTRY_SYNC_ISTIO keeps.
func IstioKinds() []Kind {
	return []Kind{
		{Name: "DestinationRule", GVR: schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
			Routes: func(o *unstructured.Unstructured) []string { return names(o, "subsets") }},
		{Name: "VirtualService", GVR: schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
			Routes: virtualServiceURIs},
	}
}

// grpcRouteMethods are the methods a GRPCRoute's rules match.
func grpcRouteMethods(o *unstructured.Unstructured) []string {
	var out []string
	for _, rule := range items(o.Object, "spec", "rules") {
		for _, match := range items(rule, "matches") {
			service, _, _ := unstructured.NestedString(match, "method", "service")
			method, _, _ := unstructured.NestedString(match, "method", "method")
			out = append(out, "/"+service+"/"+method)
		}
	}
	return out
}

// virtualServiceURIs are the paths a VirtualService's routes match, with
// the header values that select a subset.
func virtualServiceURIs(o *unstructured.Unstructured) []string {
	var out []string
	for _, route := range items(o.Object, "spec", "http") {
		for _, match := range items(route, "match") {
			uri, _, _ := unstructured.NestedString(match, "uri", "exact")
			key := uri
			if headers, ok, _ := unstructured.NestedMap(match, "headers"); ok {
				for name, v := range headers {
					exact, _, _ := unstructured.NestedString(v.(map[string]any), "exact")
					key += " " + name + "=" + exact
				}
			}
			out = append(out, key)
		}
	}
	return out
}

// names are the "name" fields of the list at spec.<field>.
func names(o *unstructured.Unstructured, field string) []string {
	var out []string
	for _, item := range items(o.Object, "spec", field) {
		name, _, _ := unstructured.NestedString(item, "name")
		out = append(out, name)
	}
	return out
}

func items(obj map[string]any, fields ...string) []map[string]any {
	list, _, _ := unstructured.NestedSlice(obj, fields...)
	out := make([]map[string]any, 0, len(list))
	for _, item := range list {
		if m, ok := item.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
