// Package model holds the registry's vocabulary: the wire format shared with
// the Go registry library and its one codec (entry.go, decode.go), the rules
// that decide whether an entry is valid and alive, and the immutable index
// that readers query.
package model

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ConfigMapPrefix starts the name of every registry ConfigMap: ff-registry-<env>.
const ConfigMapPrefix = "ff-registry-"

// DefaultEnv is the env that the library maps the empty env name to.
const DefaultEnv = "default"

// RunDateLayout is how the library writes run_date: Go's time.DateTime, no zone.
const RunDateLayout = time.DateTime

// ServiceNode is one registry entry exactly as the Go library writes it. Field
// order and the absence of omitempty keep our writes byte-compatible with it.
type ServiceNode struct {
	ProtoCount int             `json:"proto_count"`
	LeaseID    int64           `json:"lease_id"`
	RunDate    string          `json:"run_date"`
	Methods    map[string]bool `json:"methods"`
	Network    Network         `json:"network"`
	Kernel     Kernel          `json:"kernel"`
	Meta       Meta            `json:"meta"`
}

// Network says where an instance is reached; Internal is a Service DNS name.
type Network struct {
	SN       string `json:"sn"`
	Internal string `json:"internal"`
	External string `json:"external"`
}

// Kernel names the runtime that registered the instance.
type Kernel struct {
	Language string `json:"language"`
	Version  string `json:"version"`
}

// Meta identifies the instance's env, app and version (Istio subset).
type Meta struct {
	Env     string `json:"env"`
	AppID   string `json:"app_id"`
	Version string `json:"version"`
}

// Node is a parsed, valid entry of one env, enriched with where it was found.
// Nodes are shared between snapshots and must not be modified once built.
type Node struct {
	Namespace  string
	Key        string
	Env        string
	AppID      string
	LeaseID    int64
	Version    string
	RunDate    time.Time
	ProtoCount int
	// Methods is sorted, without duplicates.
	Methods []string
	Network Network
	Kernel  Kernel
	// ObservedAt is when the reader first saw this value of the entry, kept
	// only when RunDate was more than the tolerated clock skew ahead of that
	// instant (see Heartbeat); zero otherwise.
	ObservedAt time.Time
	// ServiceKept marks a version registration (keepalive "service"): one
	// entry for a version of an app, alive by its Service's ready endpoints.
	ServiceKept bool
	// Endpoint is set on the nodes an index makes of a version registration,
	// one per ready endpoint of its Service that keeps it alive.
	Endpoint *Endpoint
}

// readyHeartbeat is the heartbeat of a ready endpoint: it is alive for as
// long as Kubernetes says it is ready, whatever the clock, and sorts before
// every heartbeat of a run_date.
var readyHeartbeat = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// Heartbeat is the instant the node's liveness counts from: its run_date, or,
// for a run_date that was too far in the future when the reader first saw it,
// that first sighting (see EffectiveHeartbeat). A version registration's
// ready endpoint never expires, and a version registration without one is
// never alive.
func (n *Node) Heartbeat() time.Time {
	if n.ServiceKept {
		// Alive means ready: a version registration is alive by its
		// endpoints alone, never by its run_date.
		if n.Endpoint != nil {
			return readyHeartbeat
		}
		return time.Time{}
	}
	if !n.ObservedAt.IsZero() {
		return n.ObservedAt
	}
	return n.RunDate
}

// Alive reports whether the node's last heartbeat is within ttl of now.
func (n *Node) Alive(now time.Time, ttl time.Duration) bool {
	return !n.Heartbeat().Before(now.Add(-ttl))
}

// RunDateAhead is how far the node's run_date was ahead of the reader's clock
// when the reader first saw it, when that was more than the tolerated skew;
// zero otherwise.
func (n *Node) RunDateAhead() time.Duration {
	if n.ObservedAt.IsZero() {
		return 0
	}
	return n.RunDate.Sub(n.ObservedAt)
}

// DefaultTTL is the Go registry library's heartbeat TTL: an instance is
// alive for this long after its run_date, and heartbeats every half of it.
const DefaultTTL = 10 * time.Second

// DefaultMaxClockSkew is how far ahead of a reader's clock a run_date may be
// and still be taken at its word.
const DefaultMaxClockSkew = time.Minute

// EffectiveHeartbeat is the liveness rule for clocks that lie. A run_date
// more than maxSkew (DefaultMaxClockSkew when not positive) ahead of
// observedAt, the instant a reader first saw the entry's current value, would
// keep a crashed instance alive until its writer's clock catches up: a writer
// in UTC+8 writing local time into a zone-less run_date read as UTC stays
// alive for 8 hours. Such an entry counts from observedAt instead, which the
// reader keeps while the value is unchanged: it stays alive while heartbeats
// keep changing it and dies one TTL after the last change. ahead reports
// that case. A zero observedAt (a reader that cannot tell) keeps run_date.
func EffectiveHeartbeat(runDate, observedAt time.Time, maxSkew time.Duration) (heartbeat time.Time, ahead bool) {
	if maxSkew <= 0 {
		maxSkew = DefaultMaxClockSkew
	}
	if observedAt.IsZero() || runDate.Sub(observedAt) <= maxSkew {
		return runDate, false
	}
	return observedAt, true
}

// CanonicalKey is the ConfigMap data key registry-api writes for an instance.
// The library's "<appId>/<leaseId>" is rejected by a real API server.
func CanonicalKey(appID string, leaseID int64) string {
	return appID + "." + strconv.FormatInt(leaseID, 10)
}

// ConfigMapName returns the registry ConfigMap name for env.
func ConfigMapName(env string) string {
	if env == "" {
		env = DefaultEnv
	}
	return ConfigMapPrefix + env
}

// EnvFromConfigMapName returns the env a ConfigMap name stands for, if it is
// a registry ConfigMap at all.
func EnvFromConfigMapName(name string) (string, bool) {
	env, ok := strings.CutPrefix(name, ConfigMapPrefix)
	if !ok || env == "" {
		return "", false
	}
	return env, true
}

// Reasons an entry is skipped; they are part of the API (invalid_entries[].reason).
const (
	ReasonInvalidJSON    = "invalid_json"
	ReasonMissingAppID   = "missing_app_id"
	ReasonMissingLeaseID = "missing_lease_id"
	ReasonEnvMismatch    = "env_mismatch"
	ReasonBadRunDate     = "invalid_run_date"
)

// Warnings about entries that are still served.
const (
	WarnNonCanonicalKey = "non_canonical_key"
	WarnDuplicate       = "duplicate_instance"
	WarnInvalidMethod   = "invalid_method"
	// WarnRunDateInFuture: run_date was more than the tolerated clock skew
	// ahead of the reader's clock; liveness counts from when it was seen.
	WarnRunDateInFuture = "run_date_in_future"
)

// EntryError explains why an entry was skipped.
type EntryError struct {
	Reason string
	Detail string
}

func (e *EntryError) Error() string { return e.Reason + ": " + e.Detail }

// node applies the rules that make a decoded entry a Node: an identity, the
// ConfigMap's env, a readable run_date, valid method names.
func (sn *serviceNodeIn) node(namespace, env, key string, opts ParseOptions) (*Node, []string, error) {
	if sn.Meta.AppID == "" {
		return nil, nil, &EntryError{ReasonMissingAppID, "meta.app_id is empty"}
	}
	if sn.LeaseID == 0 {
		return nil, nil, &EntryError{ReasonMissingLeaseID, "lease_id is missing or zero"}
	}
	if sn.Meta.Env != env {
		return nil, nil, &EntryError{ReasonEnvMismatch, fmt.Sprintf("meta.env %q is not the ConfigMap's env %q", sn.Meta.Env, env)}
	}
	runDate, err := ParseRunDate(sn.RunDate, opts.Zone)
	if err != nil {
		return nil, nil, &EntryError{ReasonBadRunDate, err.Error()}
	}
	var warnings []string
	if key != CanonicalKey(sn.Meta.AppID, sn.LeaseID) {
		warnings = append(warnings, WarnNonCanonicalKey)
	}
	methods := sn.Methods.names[:0]
	badMethod := false
	for _, m := range sn.Methods.names {
		if !ValidMethodName(m) {
			badMethod = true
			continue
		}
		methods = append(methods, m)
	}
	if badMethod {
		warnings = append(warnings, WarnInvalidMethod)
	}
	var observedAt time.Time
	if _, ahead := EffectiveHeartbeat(runDate, opts.ObservedAt, opts.MaxClockSkew); ahead {
		observedAt = opts.ObservedAt
		warnings = append(warnings, WarnRunDateInFuture)
	}
	sort.Strings(methods)
	methods = slices.Compact(methods)
	return &Node{
		Namespace:  namespace,
		Key:        key,
		Env:        env,
		AppID:      sn.Meta.AppID,
		LeaseID:    sn.LeaseID,
		Version:    sn.Meta.Version,
		RunDate:    runDate,
		ProtoCount: sn.ProtoCount,
		Methods:    methods,
		Network:    sn.Network,
		Kernel:     sn.Kernel,
		ObservedAt: observedAt,
		// The member is registry-api's; the library's readers ignore it.
		ServiceKept: string(sn.Keepalive) == KeepaliveService,
	}, warnings, nil
}

// ParseRunDate reads a run_date: the library's "YYYY-MM-DD HH:MM:SS" in zone
// (UTC when nil), or RFC 3339.
func ParseRunDate(s string, zone *time.Location) (time.Time, error) {
	if zone == nil {
		zone = time.UTC
	}
	if t, err := time.ParseInLocation(RunDateLayout, s, zone); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("run_date %q is neither %q nor RFC 3339", s, RunDateLayout)
}

// FormatRunDate writes t as the library does, in zone (UTC when nil).
func FormatRunDate(t time.Time, zone *time.Location) string {
	if zone == nil {
		zone = time.UTC
	}
	return t.In(zone).Format(RunDateLayout)
}

// ValidMethodName reports whether m is a full gRPC method name with its
// leading slash: /<package.Service>/<Method>, each dot- or slash-separated
// part an identifier ([A-Za-z_][A-Za-z0-9_]*). It is hand-written because it
// runs for every method of every entry parsed (the regexp was a tenth of a
// full rebuild); openapi.yaml states the same rule as a pattern.
func ValidMethodName(m string) bool {
	if len(m) < 4 || m[0] != '/' {
		return false
	}
	slashes := 0
	partStart := true
	for i := 1; i < len(m); i++ {
		c := m[i]
		switch {
		case c == '/' || c == '.':
			if partStart || (c == '.' && slashes > 0) {
				return false
			}
			if c == '/' {
				slashes++
				if slashes > 1 {
					return false
				}
			}
			partStart = true
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			partStart = false
		case '0' <= c && c <= '9':
			if partStart {
				return false
			}
		default:
			return false
		}
	}
	return slashes == 1 && !partStart
}

// ServiceOf returns the gRPC service part of a full method name.
func ServiceOf(method string) string {
	s := strings.TrimPrefix(method, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidAppID reports whether id is a DNS-1123 label, as a Kubernetes Service name is.
func ValidAppID(id string) bool { return len(id) <= 63 && dnsLabel.MatchString(id) }

// envPattern keeps ff-registry-<env> a valid ConfigMap name (a DNS-1123 subdomain).
var envPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// ValidEnv reports whether env makes a valid registry ConfigMap name.
func ValidEnv(env string) bool {
	return len(ConfigMapPrefix)+len(env) <= 253 && envPattern.MatchString(env)
}
