package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
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
