package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// A version registration is one entry for a version of an app, however many
// pods run it: registered once (every pod of a rollout may send the same
// body), kept alive by the ready endpoints of the Kubernetes Service that
// network.internal names, never by heartbeats.

// VersionLeaseID is the lease id of the version registration of app's
// version: the first 8 bytes of SHA-256("<app>\x00<version>"), big-endian,
// with the sign bit cleared (0 becomes 1). Every replica, and anyone who
// wants to find the entry, derives the same id, so that the entry has one
// key, <app>.<lease id>, whoever writes it.
func VersionLeaseID(app, version string) int64 {
	sum := sha256.Sum256([]byte(app + "\x00" + version))
	id := int64(binary.BigEndian.Uint64(sum[:8]) >> 1)
	if id == 0 {
		return 1
	}
	return id
}

// ServiceRef names a Kubernetes Service; an empty Namespace is the one the
// entry is stored in.
type ServiceRef struct {
	Namespace string
	Name      string
}

func (s ServiceRef) String() string { return s.Namespace + "/" + s.Name }

// ParseServiceAddress reads network.internal as a Kubernetes Service's DNS
// name and port: svc:port, svc.ns:port, svc.ns.svc:port or
// svc.ns.svc.cluster.local:port. Anything else (an IP literal, a host
// outside the cluster's Service names, a missing port) is an error that says
// which forms are accepted.
func ParseServiceAddress(addr string) (ServiceRef, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return ServiceRef{}, fmt.Errorf("%q is not host:port (%v); %s", addr, err, serviceForms)
	}
	if n, perr := strconv.ParseUint(port, 10, 16); perr != nil || n == 0 {
		return ServiceRef{}, fmt.Errorf("port %q of %q is not a number from 1 to 65535", port, addr)
	}
	if _, perr := netip.ParseAddr(host); perr == nil {
		return ServiceRef{}, fmt.Errorf("%q is an IP address, not a Service name: pods and their IPs come and go, the Service's ready endpoints say which are up; %s", host, serviceForms)
	}
	labels := strings.Split(strings.TrimSuffix(host, "."), ".")
	var ref ServiceRef
	switch {
	case len(labels) == 1:
		ref = ServiceRef{Name: labels[0]}
	case len(labels) == 2:
		ref = ServiceRef{Name: labels[0], Namespace: labels[1]}
	case len(labels) == 3 && labels[2] == "svc",
		len(labels) == 5 && labels[2] == "svc" && labels[3] == "cluster" && labels[4] == "local":
		ref = ServiceRef{Name: labels[0], Namespace: labels[1]}
	default:
		return ServiceRef{}, fmt.Errorf("%q is not the DNS name of a Kubernetes Service; %s", host, serviceForms)
	}
	if len(validation.IsDNS1035Label(ref.Name)) > 0 {
		return ServiceRef{}, fmt.Errorf("%q is not a Service name (a DNS-1035 label); %s", ref.Name, serviceForms)
	}
	if ref.Namespace != "" && len(validation.IsDNS1123Label(ref.Namespace)) > 0 {
		return ServiceRef{}, fmt.Errorf("%q is not a namespace name (a DNS-1123 label); %s", ref.Namespace, serviceForms)
	}
	return ref, nil
}

const serviceForms = "a version registration names its Kubernetes Service as svc:port, svc.ns:port or svc.ns.svc.cluster.local:port"

// ValidVersion reports whether v can be a version registration's version: a
// Kubernetes label value, since it must match the pods' version label.
func ValidVersion(v string) bool {
	return v != "" && len(validation.IsValidLabelValue(v)) == 0
}

// Endpoint is one ready endpoint of a Service, as its EndpointSlice and its
// pod say; Node and Zone are empty where the slice does not tell them.
type Endpoint struct {
	Pod  string
	Node string
	Zone string
	// Version is the pod's version label; empty without one.
	Version string
}

// ServiceEndpoints are one Service's endpoints at one moment.
type ServiceEndpoints struct {
	// Ready are the ready, not terminating endpoints, sorted by pod.
	Ready []Endpoint
	// Labelled says that some pod behind the Service's endpoints, ready or
	// not, carries a version label. Without one, every ready endpoint
	// counts for every version registered on the Service.
	Labelled bool
}

// For returns the endpoints that keep version of the Service alive.
func (s *ServiceEndpoints) For(version string) []Endpoint {
	if s == nil {
		return nil
	}
	if !s.Labelled {
		return s.Ready
	}
	var out []Endpoint
	for _, e := range s.Ready {
		if e.Version == version {
			out = append(out, e)
		}
	}
	return out
}

// Equal reports whether two views of a Service's endpoints keep the same
// versions alive with the same endpoints.
func (s *ServiceEndpoints) Equal(o *ServiceEndpoints) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.Labelled == o.Labelled && slices.Equal(s.Ready, o.Ready)
}

// Endpoints are the endpoints of the Services that version registrations
// name, by Service; immutable once published. A Service absent from it has
// no ready endpoint.
type Endpoints map[ServiceRef]*ServiceEndpoints

// ServiceOfNode is the Service a version registration names; a name without
// a namespace is in the entry's own. ok is false for an entry whose
// network.internal names no Service (written past the API's check).
func ServiceOfNode(n *Node) (ServiceRef, bool) {
	svc, err := ParseServiceAddress(n.Network.Internal)
	if err != nil {
		return ServiceRef{}, false
	}
	if svc.Namespace == "" {
		svc.Namespace = n.Namespace
	}
	return svc, true
}
