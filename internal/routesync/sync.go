// Package routesync keeps the routing objects that existing gateways read
// (Gateway API GRPCRoutes, Istio VirtualServices and DestinationRules) in
// step with the registry's route table. The leader applies them with
// server-side apply, as field manager registry-api, and creates, updates and
// deletes only objects that carry its managed-by label.
//
// Routes outlive brief gaps: a method that stops being served keeps its
// rules for a grace period after it was last seen live, and for a grace
// period after the leader starts leading or the registry's data comes back
// fresh nothing is removed at all, since what this replica remembers of the
// last grace period is then incomplete. A snapshot that is not fresh (the API
// server is unreachable) is no evidence of anything: the sync waits.
package routesync

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/acme/registry-api/internal/export"
	"github.com/acme/registry-api/internal/follow"
	"github.com/acme/registry-api/internal/model"
)

// FieldManager is the server-side apply field manager of every object the
// sync writes.
const FieldManager = "registry-api"

// Defaults of Options.
const (
	// DefaultGrace is how long a method's rules outlive its last live
	// instance. A redeploy replaces every pod within a minute or two.
	DefaultGrace = 5 * time.Minute
	// DefaultMaxStaleness is a few polls' worth of missed reads.
	DefaultMaxStaleness = 30 * time.Second
	// DefaultResync is how soon a hand edit or a newly installed CRD is
	// seen.
	DefaultResync = 5 * time.Minute
)

// retryDiscovery spaces attempts while discovery has never answered.
const retryDiscovery = 5 * time.Second

// Kind is one kind of object the sync manages.
type Kind struct {
	// Name is the kind, as in an object's "kind".
	Name string
	GVR  schema.GroupVersionResource
	// Routes lists what an object of the kind routes (its methods, its
	// subsets); while nothing may be removed, an update that would drop
	// one of them waits.
	Routes func(*unstructured.Unstructured) []string
}

// Build makes one env's objects, of every kind the sync manages, from its
// route table; namespaces names each app's namespace.
type Build func(env string, table *model.RouteTable, namespaces map[string]string) ([]*unstructured.Unstructured, error)

// Options configure a Syncer. Follow, Client, Discovery, Kinds and Build are
// required; the zero value of the others is their default.
type Options struct {
	// Follow is where the route table comes from: the sync follows every
	// env's routes there, and wakes when their tag changes.
	Follow    *follow.Hub
	Client    dynamic.Interface
	Discovery discovery.ServerResourcesInterface
	Kinds     []Kind
	Build     Build
	// TTL is the registry's: an instance is live while now - run_date <= TTL.
	TTL time.Duration
	// Grace is how long rules outlive their method's last live instance
	// (DefaultGrace when zero).
	Grace time.Duration
	// MaxStaleness is the oldest snapshot the sync acts on: older data may
	// describe a registry that has since moved on, or the API server is
	// down. It is also how often the leader checks that its data is fresh
	// while the table does not change, so that an outage pauses it (and
	// starts a grace period when it ends) even when no instance dies
	// meanwhile; a check rebuilds nothing. Zero means the package default
	// (DefaultMaxStaleness).
	MaxStaleness time.Duration
	// Resync is how often every object is applied again and discovery
	// repeated, even when the route table did not change, so that a hand
	// edit or a newly installed CRD is seen. Zero means the package default
	// (DefaultResync).
	Resync time.Duration
	// Namespaces are the watched namespaces.
	Namespaces model.Watched
	Now        func() time.Time
	Log        zerolog.Logger
	Registerer prometheus.Registerer
}

func (o *Options) validate() error {
	switch {
	case o.Follow == nil || o.Client == nil || o.Discovery == nil || o.Build == nil:
		return errors.New("route sync: needs a follow hub, a dynamic client, discovery and a builder")
	case len(o.Kinds) == 0:
		return errors.New("route sync: no kinds to sync")
	case o.TTL <= 0:
		return errors.New("route sync: the TTL must be positive")
	case o.Grace < 0 || o.MaxStaleness < 0 || o.Resync < 0:
		return errors.New("route sync: grace, staleness and resync must not be negative")
	case len(o.Namespaces) == 0:
		return errors.New("route sync: no watched namespaces")
	}
	o.Grace = cmp.Or(o.Grace, DefaultGrace)
	o.MaxStaleness = cmp.Or(o.MaxStaleness, DefaultMaxStaleness)
	o.Resync = cmp.Or(o.Resync, DefaultResync)
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// KindStatus is whether the API server serves one kind the sync manages.
type KindStatus struct {
	Kind   string
	Served bool
}

// Syncer reconciles the managed objects. Run does the leader's work;
// Discover, on every replica, keeps Status current.
type Syncer struct {
	o Options
	m *metrics

	statusMu sync.Mutex
	status   []KindStatus
	checked  time.Time

	// The leader's state, reset at the start of each term (Run).
	routes *follow.Follower // every env's routes, while leading
	memory map[string]*envMemory
	// quietUntil: until then nothing is removed (a new term, fresh data
	// after stale).
	quietUntil time.Time
	stale      bool
	// applied is the hash of what was last applied, by object; lastTable
	// the hash of everything last reconciled, lastFull when every object
	// was last applied. lastRoutes is the route table's tag, with the quiet
	// and discovery state, of the last reconcile, and graceEnds when the
	// first remembered method's grace runs out: until then, the same
	// lastRoutes builds the same objects, and nothing is rebuilt.
	applied    map[objectKey]string
	lastTable  string
	lastRoutes string
	graceEnds  time.Time
	lastFull   time.Time
	// foreign are the objects whose name someone else holds, already logged.
	foreign map[objectKey]bool
}

// envMemory is what the leader remembers of an env's last grace period.
type envMemory struct {
	routes map[string]remembered
	// namespaces of the apps, so that a gone app's objects stay where they were.
	namespaces map[string]string
}

type remembered struct {
	route model.Route
	// seen is when the method was last judged live; live, whether it was
	// at the last build. A method live at one build is live until the
	// table changes, and the next build is at that change: so one that is
	// gone then was seen until then.
	seen time.Time
	live bool
}

type objectKey struct{ kind, namespace, name string }

func (k objectKey) String() string { return k.kind + " " + k.namespace + "/" + k.name }

// New checks opts and registers the sync's metrics.
func New(opts Options) (*Syncer, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("route sync metrics: %w", err)
	}
	return &Syncer{o: opts, m: m}, nil
}

// Status is what the last discovery found, by kind in Options order; nil
// before the first.
func (s *Syncer) Status() []KindStatus {
	status, _ := s.lastDiscovery()
	return status
}

// lastDiscovery is what the last discovery found, and when. Discover runs
// beside Run, so both are read under the lock.
func (s *Syncer) lastDiscovery() ([]KindStatus, time.Time) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	return slices.Clone(s.status), s.checked
}

// Discover asks the API server which of the kinds it serves, now and every
// Resync until ctx ends. Every replica runs it, so that every replica
// reports the same status.
func (s *Syncer) Discover(ctx context.Context) {
	for {
		wait := s.o.Resync
		if s.discover() == nil {
			wait = min(wait, retryDiscovery)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// discover refreshes Status. A failed discovery keeps the last answer (nil
// before the first): a kind is not declared gone, or absent, because the API
// server did not answer.
func (s *Syncer) discover() []KindStatus {
	byGroupVersion := map[schema.GroupVersion]map[string]bool{}
	out := make([]KindStatus, len(s.o.Kinds))
	prev := s.Status()
	for i, k := range s.o.Kinds {
		gv := k.GVR.GroupVersion()
		served, ok := byGroupVersion[gv]
		if !ok {
			list, err := s.o.Discovery.ServerResourcesForGroupVersion(gv.String())
			switch {
			case err == nil:
				served = map[string]bool{}
				for _, r := range list.APIResources {
					served[r.Name] = true
				}
			case apierrors.IsNotFound(err):
				served = map[string]bool{}
			default:
				s.o.Log.Warn().Err(err).Str("group_version", gv.String()).Msg("route sync: discovery failed; keeping what it last found")
				return prev
			}
			byGroupVersion[gv] = served
		}
		out[i] = KindStatus{Kind: k.Name, Served: served[k.GVR.Resource]}
		if prev == nil || prev[i].Served != out[i].Served {
			if out[i].Served {
				s.o.Log.Info().Str("kind", k.Name).Msg("route sync: the API server serves this kind; syncing it")
			} else {
				s.o.Log.Warn().Str("kind", k.Name).Str("resource", k.GVR.String()).
					Msg("route sync: the API server does not serve this kind (is its CRD installed?); leaving it alone")
			}
		}
		s.m.served.WithLabelValues(k.Name).Set(boolGauge(out[i].Served))
	}
	s.statusMu.Lock()
	s.status, s.checked = out, s.o.Now()
	s.statusMu.Unlock()
	return out
}

// Run reconciles whenever the route table's tag changes or a deadline (a
// grace period running out, a resync, a check that the data is fresh) comes,
// until ctx ends: the leader's work.
func (s *Syncer) Run(ctx context.Context) {
	s.startTerm(s.o.Now())
	defer s.endTerm()
	for {
		changed := s.follower().Head().Changed
		next := s.Reconcile(ctx)
		wait := time.Until(next)
		if next.IsZero() {
			wait = s.o.Resync
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// startTerm forgets the last term: a leader remembers only what it saw.
func (s *Syncer) startTerm(now time.Time) {
	s.memory = map[string]*envMemory{}
	s.applied = map[objectKey]string{}
	s.foreign = map[objectKey]bool{}
	s.lastTable, s.lastRoutes, s.lastFull, s.graceEnds = "", "", time.Time{}, time.Time{}
	s.quietUntil = now.Add(s.o.Grace)
	s.stale = false
}

// follower is the leader's subscription to every env's routes.
func (s *Syncer) follower() *follow.Follower {
	if s.routes == nil {
		s.routes = s.o.Follow.Subscribe(follow.AllEnvs)
	}
	return s.routes
}

// endTerm lets the routes go: a replica that does not lead follows nothing.
func (s *Syncer) endTerm() {
	if s.routes != nil {
		s.routes.Close()
		s.routes = nil
	}
}

// Reconcile brings the cluster's managed objects to the current route
// table once, and returns when it should run again at the latest.
func (s *Syncer) Reconcile(ctx context.Context) time.Time {
	now := s.o.Now()
	head := s.follower().Head()
	snap := head.Snap
	// Not ready also while the endpoints of version registrations are
	// unread: they would look down, and their routes would be removed.
	if synced := snap.SyncedAt(); !snap.Ready() || now.Sub(synced) > s.o.MaxStaleness {
		if !s.stale {
			s.o.Log.Warn().Time("synced_at", synced).Msg("route sync: the registry's data is not fresh; changing nothing until it is")
		}
		s.stale = true
		s.m.paused.Set(1)
		return now.Add(s.o.MaxStaleness)
	}
	if s.stale {
		// Instances could not heartbeat while the API server was away:
		// give them a grace period to show they live before removing.
		s.stale = false
		s.quietUntil = now.Add(s.o.Grace)
		s.o.Log.Info().Msg("route sync: the registry's data is fresh again")
	}
	s.m.paused.Set(0)

	status, checked := s.lastDiscovery()
	if status == nil || now.Sub(checked) >= s.o.Resync {
		status = s.discover()
	}
	if status == nil {
		// Which kinds are served is not known yet.
		return now.Add(retryDiscovery)
	}
	quiet := now.Before(s.quietUntil)
	full := now.Sub(s.lastFull) >= s.o.Resync
	routes := head.Tag + fmt.Sprint(quiet, status)
	if routes == s.lastRoutes && !full && (s.graceEnds.IsZero() || now.Before(s.graceEnds)) {
		// The same table, quiet state and kinds build the same objects.
		s.m.lastSuccess.Set(unixSeconds(now))
		next := earliest(earliest(s.graceEnds, s.lastFull.Add(s.o.Resync)), now.Add(s.o.MaxStaleness))
		if quiet {
			next = earliest(next, s.quietUntil)
		}
		return next
	}
	desired, next, err := s.desired(snap, head.At, now)
	if err != nil {
		s.o.Log.Error().Err(err).Msg("route sync: building the objects failed")
		s.m.errors.WithLabelValues("", "build").Inc()
		return now.Add(s.o.MaxStaleness)
	}
	graceEnds := next
	if quiet {
		next = earliest(next, s.quietUntil)
	}
	next = earliest(earliest(next, s.lastFull.Add(s.o.Resync)), now.Add(s.o.MaxStaleness))
	hashes := hashObjects(desired)
	tableHash := digest(hashes) + fmt.Sprint(quiet, status)
	if tableHash == s.lastTable && !full {
		s.lastRoutes, s.graceEnds = routes, graceEnds
		s.m.lastSuccess.Set(unixSeconds(now))
		return next
	}
	if full {
		clear(s.applied)
	}
	ok := true
	for i, k := range s.o.Kinds {
		if !status[i].Served {
			continue
		}
		if err := s.reconcileKind(ctx, k, desired[k.Name], hashes, quiet); err != nil {
			s.o.Log.Error().Err(err).Str("kind", k.Name).Msg("route sync: reconcile failed; retrying")
			ok = false
		}
	}
	if !ok {
		// Try again soon; the API server may be back.
		return earliest(next, now.Add(min(s.o.MaxStaleness, 5*time.Second)))
	}
	s.lastTable, s.lastRoutes, s.graceEnds = tableHash, routes, graceEnds
	if full {
		s.lastFull = now
		next = earliest(next, now.Add(s.o.Resync))
	}
	s.m.lastSuccess.Set(unixSeconds(now))
	return next
}

// desired builds every object the route table calls for now, by kind and
// key, from what is live (the tables judged at at) and what was live within
// the grace period. next is when a remembered method's grace runs out.
func (s *Syncer) desired(snap *model.Snapshot, at, now time.Time) (map[string]map[objectKey]*unstructured.Unstructured, time.Time, error) {
	out := map[string]map[objectKey]*unstructured.Unstructured{}
	var next time.Time
	envs := make([]string, 0, len(snap.EnvNames)+len(s.memory))
	envs = append(envs, snap.EnvNames...)
	for name := range s.memory {
		if snap.Envs[name] == nil {
			envs = append(envs, name)
		}
	}
	slices.Sort(envs)
	for _, name := range envs {
		mem := s.memory[name]
		if mem == nil {
			mem = &envMemory{routes: map[string]remembered{}, namespaces: map[string]string{}}
			s.memory[name] = mem
		}
		var live *model.RouteTable
		if env := snap.Envs[name]; env != nil {
			live = env.Routes(at, s.o.TTL).Table
			for app, ns := range export.AppNamespaces(env) {
				mem.namespaces[app] = ns
			}
		} else {
			live = &model.RouteTable{Env: name}
		}
		table := &model.RouteTable{Env: name}
		for _, r := range live.Routes {
			if len(r.Targets) > 0 {
				mem.routes[r.Method] = remembered{route: r, seen: now, live: true}
				table.Routes = append(table.Routes, r)
			}
		}
		for method, m := range mem.routes {
			if m.live && m.seen.Equal(now) {
				continue
			}
			if m.live {
				// Live at the last build and gone at this one: live until now.
				m = remembered{route: m.route, seen: now}
				mem.routes[method] = m
			}
			end := m.seen.Add(s.o.Grace)
			if !now.Before(end) {
				delete(mem.routes, method)
				continue
			}
			table.Routes = append(table.Routes, m.route)
			next = earliest(next, end)
		}
		if len(mem.routes) == 0 && snap.Envs[name] == nil {
			delete(s.memory, name)
			continue
		}
		slices.SortFunc(table.Routes, func(a, b model.Route) int { return cmp.Compare(a.Method, b.Method) })
		objs, err := s.o.Build(name, table, mem.namespaces)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("env %s: %w", name, err)
		}
		for _, obj := range objs {
			kind := obj.GetKind()
			if out[kind] == nil {
				out[kind] = map[objectKey]*unstructured.Unstructured{}
			}
			out[kind][objectKey{kind, obj.GetNamespace(), obj.GetName()}] = obj
		}
	}
	// A dead instance's method falls out of the live table the moment its
	// TTL runs out: the table's tag changes then, which wakes Run.
	return out, next, nil
}

// reconcileKind applies kind's desired objects and deletes its managed
// objects that are no longer desired (unless quiet).
func (s *Syncer) reconcileKind(ctx context.Context, k Kind, desired map[objectKey]*unstructured.Unstructured, hashes map[objectKey]string, quiet bool) error {
	managed, err := s.listManaged(ctx, k, desired)
	if err != nil {
		return err
	}
	keys := make([]objectKey, 0, len(desired))
	for key := range desired {
		keys = append(keys, key)
	}
	slices.SortFunc(keys, compareKeys)
	var errs []error
	foreign := 0
	for _, key := range keys {
		obj := desired[key]
		existing, ours := managed[key]
		if !ours {
			taken, err := s.takenBySomeoneElse(ctx, k, key)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if taken {
				foreign++
				if !s.foreign[key] {
					s.foreign[key] = true
					s.o.Log.Warn().Str("object", key.String()).
						Msg("route sync: an object of that name exists without the label app.kubernetes.io/managed-by=registry-api; leaving it alone")
				}
				continue
			}
		}
		delete(s.foreign, key)
		if ours && quiet && dropsRoutes(k, existing, obj) {
			s.m.deferred.WithLabelValues(k.Name).Inc()
			continue
		}
		hash := hashes[key]
		if s.applied[key] == hash {
			continue
		}
		if _, err := s.o.Client.Resource(k.GVR).Namespace(key.namespace).Apply(ctx, key.name, obj,
			metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			s.m.errors.WithLabelValues(k.Name, "apply").Inc()
			errs = append(errs, fmt.Errorf("apply %s: %w", key, err))
			continue
		}
		s.applied[key] = hash
		s.m.applied.WithLabelValues(k.Name).Inc()
	}
	s.m.foreign.WithLabelValues(k.Name).Set(float64(foreign))
	if quiet {
		return errors.Join(errs...)
	}
	gone := make([]objectKey, 0)
	for key := range managed {
		if desired[key] == nil {
			gone = append(gone, key)
		}
	}
	slices.SortFunc(gone, compareKeys)
	for _, key := range gone {
		obj := managed[key]
		uid, rv := obj.GetUID(), obj.GetResourceVersion()
		err := s.o.Client.Resource(k.GVR).Namespace(key.namespace).Delete(ctx, key.name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		switch {
		case err == nil:
			s.m.deleted.WithLabelValues(k.Name).Inc()
			s.o.Log.Info().Str("object", key.String()).Msg("route sync: deleted; its methods have had no live instance for the grace period")
		case apierrors.IsNotFound(err):
		case apierrors.IsConflict(err):
			// Changed since the list; judged again next time.
		default:
			s.m.errors.WithLabelValues(k.Name, "delete").Inc()
			errs = append(errs, fmt.Errorf("delete %s: %w", key, err))
		}
		delete(s.applied, key)
	}
	return errors.Join(errs...)
}

// listManaged lists kind's managed objects in every namespace they may be
// in: the watched ones and those of the desired objects.
func (s *Syncer) listManaged(ctx context.Context, k Kind, desired map[objectKey]*unstructured.Unstructured) (map[objectKey]*unstructured.Unstructured, error) {
	namespaces := model.AllNamespaces()
	if !s.o.Namespaces.All() {
		namespaces = slices.Clone(s.o.Namespaces)
		for key := range desired {
			namespaces = append(namespaces, key.namespace)
		}
		for key := range s.applied {
			if key.kind == k.Name {
				namespaces = append(namespaces, key.namespace)
			}
		}
		slices.Sort(namespaces)
		namespaces = slices.Compact(namespaces)
	}
	out := map[objectKey]*unstructured.Unstructured{}
	for _, ns := range namespaces {
		list, err := s.o.Client.Resource(k.GVR).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: export.LabelManagedBy + "=" + export.ManagedBy})
		if err != nil {
			s.m.errors.WithLabelValues(k.Name, "list").Inc()
			return nil, fmt.Errorf("list %s in %q: %w", k.Name, ns, err)
		}
		for i := range list.Items {
			obj := &list.Items[i]
			out[objectKey{k.Name, obj.GetNamespace(), obj.GetName()}] = obj
		}
	}
	return out, nil
}

// takenBySomeoneElse reports whether an object of key's name exists that
// the sync does not manage.
func (s *Syncer) takenBySomeoneElse(ctx context.Context, k Kind, key objectKey) (bool, error) {
	obj, err := s.o.Client.Resource(k.GVR).Namespace(key.namespace).Get(ctx, key.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		s.m.errors.WithLabelValues(k.Name, "get").Inc()
		return false, fmt.Errorf("get %s: %w", key, err)
	}
	return obj.GetLabels()[export.LabelManagedBy] != export.ManagedBy, nil
}

// dropsRoutes reports whether applying desired over existing would remove
// something existing routes.
func dropsRoutes(k Kind, existing, desired *unstructured.Unstructured) bool {
	if k.Routes == nil {
		return false
	}
	keep := k.Routes(desired)
	for _, r := range k.Routes(existing) {
		if !slices.Contains(keep, r) {
			return true
		}
	}
	return false
}

func compareKeys(a, b objectKey) int {
	return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
}

// hashObjects digests each desired object, once per reconcile.
func hashObjects(desired map[string]map[objectKey]*unstructured.Unstructured) map[objectKey]string {
	hashes := map[objectKey]string{}
	for _, objs := range desired {
		for key, obj := range objs {
			hashes[key] = hashOf(obj.Object)
		}
	}
	return hashes
}

// digest names the whole of a desired set by its objects' digests: equal
// object sets digest equally.
func digest(hashes map[objectKey]string) string {
	keys := slices.SortedFunc(maps.Keys(hashes), compareKeys)
	h := sha256.New()
	for _, key := range keys {
		fmt.Fprintf(h, "%s\n%s\n", key, hashes[key])
	}
	return string(h.Sum(nil))
}

// hashOf is a digest of v's JSON: encoding/json sorts map keys, so equal
// values hash equally.
func hashOf(v any) string {
	raw, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(raw)
	return string(sum[:])
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
