package httpapi

import (
	"encoding/json"
	"time"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/routesync"
)

// Views are the JSON bodies of the API, as openapi.yaml declares them. They
// are built from the model per request (or memoized, for resolutions), and
// their slices are never nil so that lists encode as []. Lease ids encode as
// decimal strings, as proto3's JSON mapping writes an int64: they exceed 2^53,
// and JavaScript and many JSON libraries read every number as a float64.

type statusView struct {
	Status   string `json:"status"`
	SyncedAt string `json:"synced_at,omitempty"`
}

type countsView struct {
	Alive int `json:"alive"`
	Stale int `json:"stale"`
}

func newCountsView(c model.Counts) countsView { return countsView{Alive: c.Alive, Stale: c.Stale} }

type envListView struct {
	Envs []envSummaryView `json:"envs"`
}

type envSummaryView struct {
	Env            string     `json:"env"`
	Namespaces     []string   `json:"namespaces"`
	Apps           int        `json:"apps"`
	Methods        int        `json:"methods"`
	Instances      countsView `json:"instances"`
	InvalidEntries int        `json:"invalid_entries"`
	SyncedAt       string     `json:"synced_at,omitempty"`
}

func newEnvSummaryView(snap *model.Snapshot, env *model.EnvIndex, live liveness) envSummaryView {
	return envSummaryView{
		Env:            env.Name,
		Namespaces:     nonNil(env.Namespaces),
		Apps:           len(env.AppIDs),
		Methods:        len(env.MethodNames),
		Instances:      newCountsView(env.Counts(live.now(), live.ttl)),
		InvalidEntries: len(env.Invalid),
		SyncedAt:       formatOptionalTime(snap.EnvSyncedAt(env)),
	}
}

// envDetailView is an env's summary with its entries' issues listed; there
// invalid_entries is the list rather than its length.
type envDetailView struct {
	Env            string                `json:"env"`
	Namespaces     []string              `json:"namespaces"`
	Apps           int                   `json:"apps"`
	Methods        int                   `json:"methods"`
	Instances      countsView            `json:"instances"`
	InvalidEntries []model.Issue         `json:"invalid_entries"`
	Warnings       []model.Issue         `json:"warnings"`
	Conflicts      []conflictSummaryView `json:"conflicts"`
	SyncedAt       string                `json:"synced_at,omitempty"`
	RouteSync      []routeSyncKindView   `json:"route_sync,omitempty"`
}

type routeSyncKindView struct {
	Kind   string `json:"kind"`
	Served bool   `json:"served"`
}

type conflictSummaryView struct {
	Method    string   `json:"method"`
	Claimants []string `json:"claimants"`
	AppID     string   `json:"app_id"`
}

func newEnvDetailView(snap *model.Snapshot, env *model.EnvIndex, live liveness, routeSync func() []routesync.KindStatus) envDetailView {
	now := live.now()
	v := envDetailView{
		Env:            env.Name,
		Namespaces:     nonNil(env.Namespaces),
		Apps:           len(env.AppIDs),
		Methods:        len(env.MethodNames),
		Instances:      newCountsView(env.Counts(now, live.ttl)),
		InvalidEntries: nonNil(env.Invalid),
		Warnings:       nonNil(env.Warnings),
		Conflicts:      make([]conflictSummaryView, 0, len(env.Conflicts)),
		SyncedAt:       formatOptionalTime(snap.EnvSyncedAt(env)),
	}
	for _, name := range env.Conflicts {
		m := env.Methods[name]
		c := conflictSummaryView{Method: name, Claimants: make([]string, len(m.Claims))}
		for i, claim := range m.Claims {
			c.Claimants[i] = claim.AppID
		}
		c.AppID = m.Claims[m.Winner(now, live.ttl)].AppID
		v.Conflicts = append(v.Conflicts, c)
	}
	if routeSync != nil {
		for _, k := range routeSync() {
			v.RouteSync = append(v.RouteSync, routeSyncKindView{Kind: k.Kind, Served: k.Served})
		}
	}
	return v
}

type appListView struct {
	Env  string           `json:"env"`
	Apps []appSummaryView `json:"apps"`
}

type appSummaryView struct {
	AppID     string     `json:"app_id"`
	Versions  []string   `json:"versions"`
	Instances countsView `json:"instances"`
	Methods   int        `json:"methods"`
}

type appDetailView struct {
	Env       string         `json:"env"`
	AppID     string         `json:"app_id"`
	Versions  []string       `json:"versions"`
	Methods   []string       `json:"methods"`
	Instances []instanceView `json:"instances"`
}

type networkView struct {
	SN       string `json:"sn"`
	Internal string `json:"internal"`
	External string `json:"external"`
}

func newNetworkView(n model.Network) networkView {
	return networkView{SN: n.SN, Internal: n.Internal, External: n.External}
}

type kernelView struct {
	Language string `json:"language"`
	Version  string `json:"version"`
}

func newKernelView(k model.Kernel) kernelView {
	return kernelView{Language: k.Language, Version: k.Version}
}

// instanceView is an instance as an app lists it, with its liveness now.
type instanceView struct {
	Key        string      `json:"key"`
	LeaseID    int64       `json:"lease_id,string"`
	Namespace  string      `json:"namespace"`
	Version    string      `json:"version"`
	RunDate    string      `json:"run_date"`
	AgeSeconds int64       `json:"age_seconds"`
	Alive      bool        `json:"alive"`
	Network    networkView `json:"network"`
	Kernel     kernelView  `json:"kernel"`
	Methods    []string    `json:"methods"`
	ProtoCount int         `json:"proto_count"`
	endpointView
}

// endpointView names the ready endpoint an instance of a version
// registration stands for; empty for every other instance.
type endpointView struct {
	// Keepalive is "service" for a version registration's instances.
	Keepalive string `json:"keepalive,omitempty"`
	Pod       string `json:"pod,omitempty"`
	NodeName  string `json:"node_name,omitempty"`
	Zone      string `json:"zone,omitempty"`
}

func newEndpointView(n *model.Node) endpointView {
	if !n.ServiceKept {
		return endpointView{}
	}
	v := endpointView{Keepalive: model.KeepaliveService}
	if e := n.Endpoint; e != nil {
		v.Pod, v.NodeName, v.Zone = e.Pod, e.Node, e.Zone
	}
	return v
}

func newInstanceView(n *model.Node, now time.Time, ttl time.Duration) instanceView {
	// A version registration's age is its entry's: its liveness is its
	// endpoints', which have no age.
	age := now.Sub(n.Heartbeat())
	if n.ServiceKept {
		age = now.Sub(n.RunDate)
	}
	return instanceView{
		Key:          n.Key,
		LeaseID:      n.LeaseID,
		Namespace:    n.Namespace,
		Version:      n.Version,
		RunDate:      formatTime(n.RunDate),
		AgeSeconds:   int64(age / time.Second),
		Alive:        n.Alive(now, ttl),
		Network:      newNetworkView(n.Network),
		Kernel:       newKernelView(n.Kernel),
		Methods:      nonNil(n.Methods),
		ProtoCount:   n.ProtoCount,
		endpointView: newEndpointView(n),
	}
}

// registrationView answers a registration: the lease, how to keep it alive,
// and the instance as GET /v1/envs/{env}/apps/{appId} lists it.
type registrationView struct {
	LeaseID                  int64  `json:"lease_id,string"`
	Key                      string `json:"key"`
	TTLSeconds               int64  `json:"ttl_seconds"`
	HeartbeatIntervalSeconds int64  `json:"heartbeat_interval_seconds"`
	// Keepalive says who keeps the entry alive: pod (registry-api, while the
	// pod runs) or client (the instance's own heartbeats).
	Keepalive string       `json:"keepalive"`
	Instance  instanceView `json:"instance"`
}

// heartbeatView answers a heartbeat.
type heartbeatView struct {
	LeaseID                  int64  `json:"lease_id,string"`
	Key                      string `json:"key"`
	TTLSeconds               int64  `json:"ttl_seconds"`
	HeartbeatIntervalSeconds int64  `json:"heartbeat_interval_seconds"`
	RunDate                  string `json:"run_date"`
}

type methodListView struct {
	Env     string              `json:"env"`
	Methods []methodSummaryView `json:"methods"`
}

type methodSummaryView struct {
	Method         string `json:"method"`
	AppID          string `json:"app_id"`
	AliveInstances int    `json:"alive_instances"`
	Conflict       bool   `json:"conflict"`
}

// resolutionView answers which app serves a method and where. It holds
// nothing that changes with the clock alone, so that it can be memoized and
// its ETag stays put while liveness does.
type resolutionView struct {
	Method    string                 `json:"method"`
	AppID     string                 `json:"app_id"`
	Targets   []targetView           `json:"targets"`
	Instances []resolvedInstanceView `json:"instances"`
	Conflict  *conflictView          `json:"conflict,omitempty"`
}

type targetView struct {
	Internal  string   `json:"internal"`
	External  string   `json:"external"`
	Versions  []string `json:"versions"`
	Instances int      `json:"instances"`
}

type resolvedInstanceView struct {
	Key       string      `json:"key"`
	LeaseID   int64       `json:"lease_id,string"`
	Namespace string      `json:"namespace"`
	Version   string      `json:"version"`
	RunDate   string      `json:"run_date"`
	Network   networkView `json:"network"`
	Kernel    kernelView  `json:"kernel"`
	endpointView
}

type conflictView struct {
	Claimants []claimantView `json:"claimants"`
	Rule      string         `json:"rule"`
}

type claimantView struct {
	AppID          string `json:"app_id"`
	AliveInstances int    `json:"alive_instances"`
}

type resolveRequest struct {
	Methods []string `json:"methods"`
	Version string   `json:"version,omitempty"`
}

type resolveResponseView struct {
	Results []resolveResultView `json:"results"`
}

// resolveResultView holds one method's answer: a resolution, rendered as the
// single-method route renders it, or a problem.
type resolveResultView struct {
	Method     string          `json:"method"`
	Resolution json.RawMessage `json:"resolution,omitempty"`
	Error      *problem        `json:"error,omitempty"`
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func formatOptionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return formatTime(t)
}
