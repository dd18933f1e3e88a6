// Package upkeep plans the leader's upkeep of the registry: which entries
// of pod-bound registrations to refresh while their pods run, which to
// remove once their pods are gone, and which entries nobody has heartbeated
// for long to remove (GC). It decides; the registry writer applies each
// ConfigMap's plan in one conflict-checked write (write.Writer.ApplyUpkeep),
// judging every action again on the fresh copy. The election that picks the
// leader is internal/election.
package upkeep

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/write"
)

// Defaults of Options.
const (
	DefaultInterval    = model.DefaultTTL / 2
	DefaultGCAfter     = 15 * time.Minute
	DefaultListTimeout = 10 * time.Second
)

// ConfigMapLister lists the registry ConfigMaps; store.Store is one.
type ConfigMapLister interface {
	List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error)
}

// PodLister lists the pods of a namespace.
type PodLister interface {
	ListPods(ctx context.Context, namespace string) ([]corev1.Pod, error)
}

// EntryWriter applies upkeep actions; *write.Writer is one.
type EntryWriter interface {
	ApplyUpkeep(ctx context.Context, namespace, env string, actions []write.UpkeepAction) ([]write.UpkeepOutcome, error)
}

var _ EntryWriter = (*write.Writer)(nil)

// KubePods lists pods through the API server.
type KubePods struct {
	Client kubernetes.Interface
}

// ListPods reads the namespace's pods from etcd, not from the watch cache: a
// cached list could miss a pod that has just registered, and its entry would
// be removed as if the pod were gone.
func (k KubePods) ListPods(ctx context.Context, namespace string) ([]corev1.Pod, error) {
	list, err := k.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods in namespace %s: %w", namespace, err)
	}
	return list.Items, nil
}

// Options configure a Keeper. The zero value of every field but ConfigMaps,
// Writer and Namespaces is safe.
type Options struct {
	ConfigMaps ConfigMapLister
	// Pods lists pods for pod-bound entries; nil leaves those entries to GC.
	Pods   PodLister
	Writer EntryWriter
	// Namespaces are the watched namespaces.
	Namespaces model.Watched
	// Interval between cycles; zero means the package default
	// (DefaultInterval, half the library's TTL), so that a pod-bound entry
	// never looks dead.
	Interval time.Duration
	// GCAfter removes entries whose run_date is older; 0 disables GC.
	GCAfter time.Duration
	// Snapshots say which version registrations have ready endpoints (the
	// index's nodes of them that stand for an endpoint). GC never removes
	// one that has; nil spares every version registration.
	Snapshots model.SnapshotSource
	// RefreshVersions rewrites, every cycle, the run_date of the version
	// registrations that have ready endpoints, in the same write per
	// ConfigMap as pod keepalive, for the Go library's readers; it stops
	// with their last ready endpoint. Needs Snapshots.
	RefreshVersions bool
	// Zone is where run_date values without a zone are read; nil is UTC.
	Zone *time.Location
	// MaxClockSkew is how far ahead of the clock a run_date may be and still
	// be taken at its word (model.EffectiveHeartbeat); default
	// model.DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// ListTimeout bounds each LIST; zero means the package default
	// (DefaultListTimeout).
	ListTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	Log zerolog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (o *Options) validate() error {
	switch {
	case o.ConfigMaps == nil:
		return errors.New("upkeep: no ConfigMap lister")
	case o.Writer == nil:
		return errors.New("upkeep: no writer")
	case len(o.Namespaces) == 0:
		return errors.New("upkeep: no namespaces")
	case o.Interval < 0 || o.GCAfter < 0 || o.ListTimeout < 0 || o.MaxClockSkew < 0:
		return errors.New("upkeep: interval, GC age, list timeout and clock skew must not be negative")
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.ListTimeout == 0 {
		o.ListTimeout = DefaultListTimeout
	}
	if o.MaxClockSkew == 0 {
		o.MaxClockSkew = model.DefaultMaxClockSkew
	}
	if o.Zone == nil {
		o.Zone = time.UTC
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Keeper runs upkeep cycles.
type Keeper struct {
	opts Options
	log  zerolog.Logger
	m    *metrics

	mu sync.Mutex
	// seen remembers, for the entries whose run_date was too far ahead of
	// the clock, when their current value was first seen: their liveness
	// counts from there. A new leader, or a cycle whose LIST of their
	// namespace failed, starts without it, which only delays their removal.
	seen map[entryID]sighting
}

// entryID names one entry of one registry ConfigMap.
type entryID struct{ namespace, env, key string }

// sighting is when the keeper first saw an entry's value.
type sighting struct {
	raw string
	at  time.Time
}

// NewKeeper returns a Keeper.
func NewKeeper(opts Options) (*Keeper, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("upkeep: metrics: %w", err)
	}
	return &Keeper{opts: opts, log: opts.Log.With().Str("component", "upkeep").Logger(), m: m}, nil
}

// Run runs a cycle at once and then every Interval until ctx ends. It is the
// leader's work: ctx ends when leadership does.
func (k *Keeper) Run(ctx context.Context) {
	ticker := time.NewTicker(k.opts.Interval)
	defer ticker.Stop()
	for {
		if err := k.Cycle(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn().Err(err).Msg("upkeep cycle incomplete; retrying next cycle")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Cycle does one round: one LIST of ConfigMaps per watched namespace, one
// LIST of pods per namespace that pod-bound entries name, then one write per
// ConfigMap that needs a change. A namespace whose LIST fails is skipped;
// the error names it.
func (k *Keeper) Cycle(ctx context.Context) error {
	var errs []error
	var found []entry
	for _, ns := range k.opts.Namespaces {
		cms, err := k.listConfigMaps(ctx, ns)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range cms {
			found = append(found, scan(&cms[i], k.opts.Zone)...)
		}
	}
	pods, err := k.listPods(ctx, found)
	errs = append(errs, err)

	now := k.opts.Now()
	k.observe(found, now)
	p := policy{gcAfter: k.opts.GCAfter, ready: readyVersions(k.opts.Snapshots), refreshVersions: k.opts.RefreshVersions}
	plans := plan(found, pods, now, p)
	for _, t := range slices.SortedFunc(maps.Keys(plans), compareTargets) {
		if err := ctx.Err(); err != nil {
			return err
		}
		applied, err := k.opts.Writer.ApplyUpkeep(ctx, t.namespace, t.env, plans[t])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k.report(t, applied, now)
	}
	err = errors.Join(errs...)
	result := "ok"
	if err != nil {
		result = "error"
	}
	k.m.cycles.WithLabelValues(result).Inc()
	return err
}

func (k *Keeper) listConfigMaps(ctx context.Context, ns string) ([]corev1.ConfigMap, error) {
	ctx, cancel := context.WithTimeout(ctx, k.opts.ListTimeout)
	defer cancel()
	list, err := k.opts.ConfigMaps.List(ctx, ns)
	if err != nil {
		where := "all namespaces"
		if ns != "" {
			where = "namespace " + ns
		}
		return nil, fmt.Errorf("upkeep: list registry ConfigMaps of %s: %w", where, err)
	}
	return list.Items, nil
}

// listPods lists, after the ConfigMaps so that every pod an entry names has
// had its chance to appear, the pods of each namespace that pod-bound entries
// name. A namespace whose LIST fails is absent from the result: its entries'
// pods are unknown, and nothing is done for them on their pods' account.
func (k *Keeper) listPods(ctx context.Context, found []entry) (map[string]map[string]*corev1.Pod, error) {
	if k.opts.Pods == nil {
		return nil, nil
	}
	want := map[string]struct{}{}
	for _, e := range found {
		if e.pod != nil {
			want[e.podNamespace] = struct{}{}
		}
	}
	out := make(map[string]map[string]*corev1.Pod, len(want))
	var errs []error
	for _, ns := range slices.Sorted(maps.Keys(want)) {
		lctx, cancel := context.WithTimeout(ctx, k.opts.ListTimeout)
		pods, err := k.opts.Pods.ListPods(lctx, ns)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("upkeep: %w", err))
			continue
		}
		byName := make(map[string]*corev1.Pod, len(pods))
		for i := range pods {
			byName[pods[i].Name] = &pods[i]
		}
		out[ns] = byName
	}
	return out, errors.Join(errs...)
}

// observe sets each entry's effective heartbeat: its run_date, or, for one too
// far in the future, when its current value was first seen, which is now for
// a value not seen before. It forgets the entries it no longer needs to know.
func (k *Keeper) observe(found []entry, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	next := make(map[entryID]sighting)
	for i := range found {
		e := &found[i]
		id := entryID{e.namespace, e.env, e.key}
		at := now
		if s, ok := k.seen[id]; ok && s.raw == e.raw {
			at = s.at
		}
		e.heartbeat, e.ahead = model.EffectiveHeartbeat(e.runDate, at, k.opts.MaxClockSkew)
		if e.ahead {
			next[id] = sighting{raw: e.raw, at: at}
		}
	}
	k.seen = next
}

// report logs every removal and counts what was done.
func (k *Keeper) report(t target, applied []write.UpkeepOutcome, now time.Time) {
	refreshed := 0
	for _, o := range applied {
		switch o.Kind {
		case write.KeepAlive:
			refreshed++
			k.m.refreshed.Inc()
			continue
		case write.KeepVersionAlive:
			refreshed++
			k.m.versionsKept.Inc()
			continue
		case write.RemoveStale:
			k.m.gcRemoved.Inc()
		case write.RemovePodGone:
			k.m.podGoneRemoved.Inc()
		}
		ev := k.log.Info().Str("env", t.env).Str("namespace", t.namespace).Str("key", o.Key).
			Str("app", o.AppID).Int64("lease", o.LeaseID).Str("reason", o.Kind.String())
		if o.Value != "" {
			// Dead since its value stopped changing; its run_date is ahead.
			ev = ev.Bool("run_date_in_future", true).Time("run_date", o.RunDate)
		} else if !o.RunDate.IsZero() {
			ev = ev.Dur("age", now.Sub(o.RunDate).Truncate(time.Second))
		}
		if o.Kind == write.RemovePodGone {
			ev.Str("pod_uid", o.PodUID).Msg("removed registry entry: its pod is gone")
		} else {
			ev.Msg("removed registry entry: no heartbeat for longer than REGISTRY_GC_AFTER")
		}
	}
	if refreshed > 0 {
		k.log.Debug().Str("env", t.env).Str("namespace", t.namespace).Int("entries", refreshed).Msg("kept pod-bound entries and version registrations alive")
	}
}

// entry is what a cycle reads of one registry entry.
type entry struct {
	namespace, env, key string
	raw                 string
	runDate             time.Time // zero when unreadable
	// heartbeat is what liveness counts from (see Keeper.observe); ahead
	// says that it is not runDate, which was too far in the future.
	heartbeat time.Time
	ahead     bool
	// pod is set for entries kept alive for their pod, which lives in
	// podNamespace (the registering ServiceAccount's namespace).
	pod          *model.PodRef
	podNamespace string
	// serviceKept marks a version registration, alive by its Service's
	// ready endpoints whatever its run_date.
	serviceKept bool
}

// scan reads the entries of a registry ConfigMap.
func scan(cm *corev1.ConfigMap, zone *time.Location) []entry {
	env, ok := model.EnvFromConfigMapName(cm.Name)
	if !ok {
		return nil
	}
	out := make([]entry, 0, len(cm.Data))
	for key, raw := range cm.Data {
		e := entry{namespace: cm.Namespace, env: env, key: key, raw: raw}
		// An entry that is not a JSON object has no run_date and no pod.
		if facts, ok := model.ReadEntryFacts([]byte(raw)); ok {
			e.runDate = facts.RunDate(zone)
			own, err := facts.Ownership()
			e.serviceKept = err == nil && own.ServiceKept()
			if err == nil && own.PodBound() {
				e.pod = own.RegisteredBy.Pod
				e.podNamespace = own.RegisteredBy.Namespace
				if e.podNamespace == "" {
					e.podNamespace = cm.Namespace
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// entryRef names one entry of one registry ConfigMap.
type entryRef struct{ namespace, env, key string }

// readyVersions are the version registrations of the current snapshot that
// have a ready endpoint; nil without snapshots.
func readyVersions(src model.SnapshotSource) map[entryRef]bool {
	if src == nil {
		return nil
	}
	out := make(map[entryRef]bool)
	for _, env := range src.Snapshot().Envs {
		for _, n := range env.Nodes {
			if n.ServiceKept && n.Endpoint != nil {
				out[entryRef{n.Namespace, env.Name, n.Key}] = true
			}
		}
	}
	return out
}

// policy is what plan decides by besides what a cycle read.
type policy struct {
	gcAfter time.Duration
	// ready are the version registrations with ready endpoints; nil when
	// unknown, which spares them all.
	ready           map[entryRef]bool
	refreshVersions bool
}

// target is one registry ConfigMap.
type target struct{ namespace, env string }

func compareTargets(a, b target) int {
	return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.env, b.env))
}

// plan decides, from what a cycle read, what to do to each entry:
//   - a pod-bound entry whose pod runs (same uid, not terminating, not
//     finished) is kept alive;
//   - one whose pod is gone, replaced, terminating or finished is removed;
//   - one whose pods could not be listed is left to GC;
//   - a version registration with a ready endpoint is refreshed (with
//     refreshVersions) and never removed; unknown readiness spares it too;
//   - with GC on, any other entry whose heartbeat is older than gcAfter is
//     removed, whoever wrote it. An entry whose run_date is too far in the
//     future counts from when its value was last seen to change, and is
//     removed only if its value is still the same on the fresh copy.
//
// pods holds, per namespace that could be listed, its pods by name.
func plan(found []entry, pods map[string]map[string]*corev1.Pod, now time.Time, p policy) map[target][]write.UpkeepAction {
	gcAfter := p.gcAfter
	out := make(map[target][]write.UpkeepAction)
	add := func(e entry, a write.UpkeepAction) {
		t := target{e.namespace, e.env}
		out[t] = append(out[t], a)
	}
	staleBefore := now.Add(-gcAfter)
	for _, e := range found {
		if e.pod != nil {
			if byName, listed := pods[e.podNamespace]; listed {
				kind := write.RemovePodGone
				if running(byName[e.pod.Name], e.pod.UID) {
					kind = write.KeepAlive
				}
				add(e, write.UpkeepAction{Kind: kind, Key: e.key, PodUID: e.pod.UID})
				continue
			}
		}
		if e.serviceKept {
			// Alive by its endpoints: refreshed while it has one, and never
			// removed then; without one it ages like any entry.
			ready := p.ready == nil || p.ready[entryRef{e.namespace, e.env, e.key}]
			if p.ready != nil && ready && p.refreshVersions {
				add(e, write.UpkeepAction{Kind: write.KeepVersionAlive, Key: e.key})
			}
			if ready {
				continue
			}
		}
		if gcAfter > 0 && !e.heartbeat.IsZero() && e.heartbeat.Before(staleBefore) {
			act := write.UpkeepAction{Kind: write.RemoveStale, Key: e.key, StaleBefore: staleBefore}
			if e.ahead {
				act.Value = e.raw
			}
			add(e, act)
		}
	}
	for _, acts := range out {
		slices.SortFunc(acts, func(a, b write.UpkeepAction) int { return cmp.Compare(a.Key, b.Key) })
	}
	return out
}

// running reports whether pod is the pod with uid and still serves: not
// being deleted, not finished.
func running(pod *corev1.Pod, uid string) bool {
	if pod == nil || string(pod.UID) != uid || pod.DeletionTimestamp != nil {
		return false
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return false
	}
	return true
}
