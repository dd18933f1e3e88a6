package export

import (
	"cmp"
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// clusterDomain is the DNS suffix of a Service's full name. Clusters with
// another domain register svc:port or svc.ns:port, which need none.
const clusterDomain = "svc.cluster.local"

// Backend is a Service port that an address names.
type Backend struct {
	Namespace string
	Name      string
	Port      int32
}

// Host is the Service's full DNS name, as Istio names a host.
func (b Backend) Host() string { return b.Name + "." + b.Namespace + "." + clusterDomain }

func compareBackends(a, b Backend) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port))
}

// ParseAddress reads a network.internal address as the Service port it
// names: svc:port (in namespace ns, the registering app's), svc.ns:port or
// svc.ns.svc.cluster.local:port (a final dot allowed). Anything else, an IP
// literal first of all, names no Service: the reason says why.
func ParseAddress(addr, ns string) (Backend, string) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return Backend{}, ReasonNotService
	}
	if net.ParseIP(host) != nil {
		return Backend{}, ReasonIPLiteral
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return Backend{}, ReasonNotService
	}
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	b := Backend{Namespace: ns, Name: labels[0], Port: int32(port)}
	switch {
	case len(labels) == 1:
	case len(labels) == 2:
		b.Namespace = labels[1]
	case len(labels) == 5 && strings.Join(labels[2:], ".") == clusterDomain:
		b.Namespace = labels[1]
	default:
		return Backend{}, ReasonNotService
	}
	// Service names are DNS-1035 labels; namespaces DNS-1123 labels.
	if len(validation.IsDNS1035Label(b.Name)) > 0 || len(validation.IsDNS1123Label(b.Namespace)) > 0 {
		return Backend{}, ReasonNotService
	}
	return b, ""
}
