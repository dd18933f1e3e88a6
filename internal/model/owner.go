package model

import (
	"encoding/json"
	"fmt"
)

// Top-level members that registry-api adds to the entries it registers. The
// Go library ignores unknown members, so they travel with the entry unharmed.
const (
	// MemberRegisteredBy records who registered the entry through the API.
	MemberRegisteredBy = "registered_by"
	// MemberKeepalive says who keeps the entry's run_date fresh.
	MemberKeepalive = "keepalive"
)

// Values of the keepalive member.
const (
	// KeepalivePod: registry-api refreshes the entry while its pod runs.
	KeepalivePod = "pod"
	// KeepaliveClient: the instance heartbeats itself.
	KeepaliveClient = "client"
	// KeepaliveService: the entry stands for a version of an app, alive while
	// its Kubernetes Service has ready endpoints of that version (see
	// VersionLeaseID); no instance heartbeats it.
	KeepaliveService = "service"
)

// RegisteredBy is the identity that registered an entry through the API, as
// the TokenReview reported it.
type RegisteredBy struct {
	Username  string  `json:"username"`
	UID       string  `json:"uid,omitempty"`
	Namespace string  `json:"namespace,omitempty"`
	Pod       *PodRef `json:"pod,omitempty"`
}

// PodRef names the pod a token was bound to; the uid tells a pod from its
// replacement of the same name.
type PodRef struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// Ownership is what an entry says about who wrote it and who keeps it alive.
// RegisteredBy is nil for entries written by the Go library directly.
type Ownership struct {
	RegisteredBy *RegisteredBy
	Keepalive    string
}

// ReadOwnership reads the registered_by and keepalive members of an entry.
// An entry whose registered_by is present but not a usable identity is an
// error: callers must not mistake it for anyone's entry.
func ReadOwnership(raw []byte) (Ownership, error) {
	var v struct {
		RegisteredBy json.RawMessage `json:"registered_by"`
		Keepalive    json.RawMessage `json:"keepalive"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return Ownership{}, fmt.Errorf("read entry ownership: %w", err)
	}
	return ownershipOf(v.RegisteredBy, v.Keepalive)
}

// ownershipOf reads the values of the registered_by and keepalive members;
// nil for an absent one.
func ownershipOf(registeredBy, keepalive []byte) (Ownership, error) {
	var o Ownership
	if len(registeredBy) > 0 && string(registeredBy) != "null" {
		var rb RegisteredBy
		if err := json.Unmarshal(registeredBy, &rb); err != nil {
			return Ownership{}, fmt.Errorf("read entry member %q: %w", MemberRegisteredBy, err)
		}
		if rb.Username == "" {
			return Ownership{}, fmt.Errorf("entry member %q names no username", MemberRegisteredBy)
		}
		o.RegisteredBy = &rb
	}
	if len(keepalive) > 0 && string(keepalive) != "null" {
		if err := json.Unmarshal(keepalive, &o.Keepalive); err != nil {
			return Ownership{}, fmt.Errorf("read entry member %q: %w", MemberKeepalive, err)
		}
	}
	return o, nil
}

// ServiceKept reports whether the entry is a version registration, kept
// alive by its Service's ready endpoints.
func (o Ownership) ServiceKept() bool { return o.Keepalive == KeepaliveService }

// PodBound reports whether registry-api keeps the entry alive for its pod:
// it was registered with a pod-bound token and did not opt out. An unknown
// keepalive value is left alone rather than guessed at.
func (o Ownership) PodBound() bool {
	return o.RegisteredBy != nil && o.RegisteredBy.Pod != nil && o.RegisteredBy.Pod.UID != "" &&
		(o.Keepalive == KeepalivePod || o.Keepalive == "")
}
