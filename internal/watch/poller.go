// Package watch polls the registry ConfigMaps of every watched namespace and
// publishes an immutable model.Snapshot after each change. It is the only
// writer of the index; readers load the current snapshot atomically. A poll
// lists the ConfigMaps' metadata and reads only those whose resourceVersion
// moved, so that a poll at rest costs names and versions, not entries.
//
// Data flows one way, API server -> poller -> snapshot -> handlers, with one
// back edge: Apply takes a ConfigMap this replica has just written (the
// registry writer's OnWritten), so that its own writes are read back before
// the next poll.
package watch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/acme/registry-api/internal/model"
)

// Reader is the part of the store the poller needs: every poll lists the
// metadata, then reads the registry ConfigMaps that changed, each with Get or
// all with one List.
type Reader interface {
	ListMeta(ctx context.Context, namespace string) (*metav1.PartialObjectMetadataList, error)
	List(ctx context.Context, namespace string) (*corev1.ConfigMapList, error)
	Get(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
}

// DefaultInterval is the time between polls: a registration made on
// another replica is served here within it.
const DefaultInterval = 2 * time.Second

// DefaultListTimeout bounds the reading of one namespace in a poll: far
// longer than a healthy API server takes, far shorter than client-go's
// HTTP/2 health check.
const DefaultListTimeout = 10 * time.Second

// Options configure a Poller. The zero value of each field but Namespaces
// has a safe default.
type Options struct {
	// Namespaces to watch; a single "" watches all namespaces with one LIST.
	Namespaces model.Watched
	// Interval between polls; zero means the package default
	// (DefaultInterval).
	Interval time.Duration
	// ListTimeout bounds the reading of each namespace in a poll (its LIST
	// of metadata and the reads that follow); zero means the package default
	// (DefaultListTimeout). Without it an API
	// server that accepts connections but does not answer blocks polling
	// until client-go's HTTP/2 health check gives up, with nothing logged or
	// counted and no other namespace read meanwhile.
	ListTimeout time.Duration
	// TTL is the liveness window, used for the entries-by-state metrics.
	TTL   time.Duration
	Parse model.ParseOptions
	Log   zerolog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// AwaitEndpoints holds snapshots not ready until the first SetEndpoints,
	// for a replica whose version registrations are kept alive by
	// endpoints that a source (internal/endpoints) is reading.
	AwaitEndpoints bool
	// Registerer receives the poller's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

func (o *Options) validate() error {
	if len(o.Namespaces) == 0 {
		return errors.New("watch: no namespaces to watch")
	}
	if len(o.Namespaces) > 1 && slices.Contains(o.Namespaces, "") {
		return errors.New("watch: all namespaces (\"\") cannot be combined with named ones")
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.ListTimeout <= 0 {
		o.ListTimeout = DefaultListTimeout
	}
	if o.TTL <= 0 {
		o.TTL = model.DefaultTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// configMapState is what the poller remembers of one registry ConfigMap, so
// that an unchanged object or entry is never parsed twice.
type configMapState struct {
	namespace       string
	env             string
	resourceVersion string
	entries         map[string]parsedEntry
}

type parsedEntry struct {
	raw   string
	entry model.Entry
}

// Poller turns periodic polls of the API server into snapshots.
type Poller struct {
	store Reader
	opts  Options
	log   zerolog.Logger
	m     *metrics

	// mu serialises changes of the state below; readers never take it.
	mu         sync.Mutex
	configMaps map[string]*configMapState // by namespace/name
	envs       map[string]*model.EnvIndex
	syncedAt   map[string]time.Time
	failures   map[string]int // consecutive failed polls per namespace
	// endpoints are the Services' endpoints that version registrations are
	// indexed with (SetEndpoints).
	endpoints model.Endpoints
	// endpointsSet says that SetEndpoints has been called.
	endpointsSet bool

	current atomic.Pointer[model.Snapshot]
	// published is closed, and replaced, after each new snapshot is stored.
	published atomic.Pointer[chan struct{}]
}

var _ model.SnapshotNotifier = (*Poller)(nil)

// New returns a Poller that has published an empty, not yet ready snapshot.
func New(store Reader, opts Options) (*Poller, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Parse.Intern == nil {
		// Parsing happens under p.mu only, so one Interner serves every poll.
		opts.Parse.Intern = model.NewInterner()
	}
	p := &Poller{
		store:      store,
		opts:       opts,
		log:        opts.Log.With().Str("component", "watch").Logger(),
		configMaps: make(map[string]*configMapState),
		envs:       make(map[string]*model.EnvIndex),
		syncedAt:   make(map[string]time.Time),
		failures:   make(map[string]int),
	}
	p.current.Store(model.EmptySnapshot(slices.Clone(opts.Namespaces)))
	ch := make(chan struct{})
	p.published.Store(&ch)
	m, err := newMetrics(opts.Registerer, p)
	if err != nil {
		return nil, err
	}
	p.m = m
	return p, nil
}

// Snapshot returns the current snapshot; it never blocks.
func (p *Poller) Snapshot() *model.Snapshot { return p.current.Load() }

// Published returns a channel closed once a newer snapshot is published.
func (p *Poller) Published() <-chan struct{} { return *p.published.Load() }

// Run polls until ctx ends. The first poll starts at once.
func (p *Poller) Run(ctx context.Context) {
	ticker := time.NewTicker(p.opts.Interval)
	defer ticker.Stop()
	for {
		p.Poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Poll reads every watched namespace once and publishes a new snapshot. A
// namespace whose reading fails keeps its last good data.
func (p *Poller) Poll(ctx context.Context) {
	start := time.Now()
	known := p.knownVersions()
	results := make(map[string]*view, len(p.opts.Namespaces))
	for _, ns := range p.opts.Namespaces {
		v, err := p.read(ctx, ns, known)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.recordFailure(ns, err)
			continue
		}
		p.recordSuccess(ns)
		results[ns] = v
	}
	p.m.pollDuration.Observe(time.Since(start).Seconds())

	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.opts.Now()
	dirty := make(map[string]struct{})
	for ns, v := range results {
		p.syncNamespace(ns, v, now, dirty)
		p.syncedAt[ns] = now
	}
	p.rebuild(dirty)
}

// view is one poll's reading of a namespace: the registry ConfigMaps present
// at the list's resourceVersion, and the objects of those that moved.
type view struct {
	resourceVersion string
	present         map[string]struct{} // by stateKey
	changed         []*corev1.ConfigMap
}

// knownVersions returns the resourceVersion of every ConfigMap the poller
// holds, by stateKey.
func (p *Poller) knownVersions() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	known := make(map[string]string, len(p.configMaps))
	for k, st := range p.configMaps {
		known[k] = st.resourceVersion
	}
	return known
}

// read lists the metadata of ns and reads the registry ConfigMaps that the
// poller does not hold, or holds at another resourceVersion than the listed
// one, unless the listed one is older (a watch cache lagging behind this
// replica's own write). Few are read with a GET each; when more than a
// quarter of them moved (a cold start, a busy registry), one LIST is one
// request instead of many, at the price of reading the unchanged ones too.
func (p *Poller) read(ctx context.Context, ns string, known map[string]string) (*view, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.ListTimeout)
	defer cancel()
	meta, err := p.store.ListMeta(ctx, ns)
	if err != nil {
		return nil, err
	}
	v := &view{resourceVersion: meta.ResourceVersion, present: make(map[string]struct{})}
	var moved []*metav1.ObjectMeta
	for i := range meta.Items {
		m := &meta.Items[i].ObjectMeta
		if _, ok := model.EnvFromConfigMapName(m.Name); !ok {
			continue
		}
		k := stateKey(m.Namespace, m.Name)
		v.present[k] = struct{}{}
		if rv, ok := known[k]; ok && (rv == m.ResourceVersion || olderThan(m.ResourceVersion, rv)) {
			continue
		}
		moved = append(moved, m)
	}
	if len(moved) > max(1, len(v.present)/4) {
		list, err := p.store.List(ctx, ns)
		if err != nil {
			return nil, err
		}
		return viewOfList(list), nil
	}
	for _, m := range moved {
		cm, err := p.store.Get(ctx, m.Namespace, m.Name)
		if apierrors.IsNotFound(err) {
			// Deleted since the list: absent, as a later list would say.
			delete(v.present, stateKey(m.Namespace, m.Name))
			continue
		}
		if err != nil {
			return nil, err
		}
		v.changed = append(v.changed, cm)
	}
	return v, nil
}

func viewOfList(list *corev1.ConfigMapList) *view {
	v := &view{resourceVersion: list.ResourceVersion, present: make(map[string]struct{})}
	for i := range list.Items {
		cm := &list.Items[i]
		if _, ok := model.EnvFromConfigMapName(cm.Name); !ok {
			continue
		}
		v.present[stateKey(cm.Namespace, cm.Name)] = struct{}{}
		v.changed = append(v.changed, cm)
	}
	return v
}

// Apply folds a ConfigMap that the API server just returned into the index at
// once, so that a replica reads its own writes without waiting for a poll.
func (p *Poller) Apply(cm *corev1.ConfigMap) {
	env, ok := model.EnvFromConfigMapName(cm.Name)
	if !ok || !p.watches(cm.Namespace) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	dirty := make(map[string]struct{})
	p.ingest(cm, env, p.opts.Now(), dirty)
	p.rebuild(dirty)
}

// SetEndpoints indexes version registrations with eps from now on: the envs
// that name a Service whose endpoints changed are rebuilt and published, and
// nothing is read from the API server. It is the second source of the
// snapshot beside the ConfigMaps (internal/endpoints feeds it).
func (p *Poller) SetEndpoints(eps model.Endpoints) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.endpoints
	p.endpoints = eps
	first := !p.endpointsSet
	p.endpointsSet = true
	dirty := make(map[string]struct{})
	for name, idx := range p.envs {
		for _, svc := range idx.Services {
			if !prev[svc].Equal(eps[svc]) {
				dirty[name] = struct{}{}
				break
			}
		}
	}
	if len(dirty) == 0 && !first {
		return
	}
	p.rebuild(dirty)
	if first && len(dirty) == 0 {
		// Nothing to re-index, yet the snapshot becomes ready: announce it.
		next := make(chan struct{})
		close(*p.published.Swap(&next))
	}
}

func (p *Poller) watches(namespace string) bool {
	return p.opts.Namespaces.Has(namespace)
}

func (p *Poller) recordFailure(ns string, err error) {
	p.m.pollErrors.WithLabelValues(namespaceLabel(ns)).Inc()
	p.mu.Lock()
	p.failures[ns]++
	n := p.failures[ns]
	p.mu.Unlock()
	// One line per failure streak: an outage must not flood the logs.
	if n == 1 {
		p.log.Error().Err(err).Str("namespace", namespaceLabel(ns)).
			Msg("listing registry configmaps failed; serving the last good snapshot until it recovers")
	}
}

func (p *Poller) recordSuccess(ns string) {
	p.mu.Lock()
	n := p.failures[ns]
	delete(p.failures, ns)
	p.mu.Unlock()
	if n > 0 {
		p.log.Info().Str("namespace", namespaceLabel(ns)).Int("failed_polls", n).
			Msg("listing registry configmaps recovered")
	}
}

// syncNamespace reconciles the remembered ConfigMaps of ns with a view of it.
// A remembered ConfigMap the list lacks is gone, unless the poller knows it at
// a resourceVersion newer than the list's: then it was written by this
// replica (Apply) after the list's view, either while the LIST was in flight
// or ahead of the API server's watch cache, and dropping it would hide the
// replica's own write until the next poll.
func (p *Poller) syncNamespace(ns string, v *view, now time.Time, dirty map[string]struct{}) {
	for _, cm := range v.changed {
		env, _ := model.EnvFromConfigMapName(cm.Name)
		p.ingest(cm, env, now, dirty)
	}
	for k, st := range p.configMaps {
		if ns != "" && st.namespace != ns {
			continue
		}
		if _, ok := v.present[k]; !ok && !olderThan(v.resourceVersion, st.resourceVersion) {
			delete(p.configMaps, k)
			dirty[st.env] = struct{}{}
		}
	}
}

// ingest re-parses what changed in cm, seen at now; p.mu is held. An entry
// whose value is unchanged keeps its parsed node, and so the instant its value
// was first seen, which is what a future-dated run_date's liveness counts
// from (model.EffectiveHeartbeat).
func (p *Poller) ingest(cm *corev1.ConfigMap, env string, now time.Time, dirty map[string]struct{}) {
	k := stateKey(cm.Namespace, cm.Name)
	prev := p.configMaps[k]
	if prev != nil && (prev.resourceVersion == cm.ResourceVersion || olderThan(cm.ResourceVersion, prev.resourceVersion)) {
		// Unchanged, or an older copy from the watch cache than one we applied.
		return
	}
	st := &configMapState{
		namespace:       cm.Namespace,
		env:             env,
		resourceVersion: cm.ResourceVersion,
		entries:         make(map[string]parsedEntry, len(cm.Data)),
	}
	parsed := 0
	opts := p.opts.Parse
	opts.ObservedAt = now
	for key, raw := range cm.Data {
		if prev != nil {
			if old, ok := prev.entries[key]; ok && old.raw == raw {
				st.entries[key] = old
				continue
			}
		}
		st.entries[key] = parsedEntry{raw: raw, entry: parseEntry(cm.Namespace, env, key, raw, opts)}
		parsed++
	}
	p.m.entriesParsed.Add(float64(parsed))
	p.configMaps[k] = st
	dirty[env] = struct{}{}
}

func parseEntry(namespace, env, key, raw string, opts model.ParseOptions) model.Entry {
	e := model.Entry{Namespace: namespace, Key: key}
	// The bytes alias raw without a copy: ParseEntry only reads them, and a
	// full rebuild would otherwise copy every entry once more.
	node, warnings, err := model.ParseEntry(namespace, env, key, unsafe.Slice(unsafe.StringData(raw), len(raw)), opts)
	if err != nil {
		var ee *model.EntryError
		if !errors.As(err, &ee) {
			ee = &model.EntryError{Reason: model.ReasonInvalidJSON, Detail: err.Error()}
		}
		e.Err = ee
		return e
	}
	e.Node, e.Warnings = node, warnings
	return e
}

// rebuild re-indexes the dirty envs and publishes a snapshot that shares every
// other env's index with the previous one; p.mu is held. With nothing dirty
// it swaps in a snapshot with fresh sync times and the same indexes, and
// announces nothing (Published): a poll that changes nothing wakes nobody.
func (p *Poller) rebuild(dirty map[string]struct{}) {
	if len(dirty) > 0 {
		byEnv := make(map[string][]model.Entry, len(dirty))
		present := make(map[string]bool, len(dirty))
		for _, st := range p.configMaps {
			if _, ok := dirty[st.env]; !ok {
				continue
			}
			present[st.env] = true
			for _, pe := range st.entries {
				byEnv[st.env] = append(byEnv[st.env], pe.entry)
			}
		}
		for env := range dirty {
			if !present[env] {
				delete(p.envs, env)
				continue
			}
			idx := model.BuildEnvWith(env, byEnv[env], p.endpoints)
			// An empty ConfigMap still places the env in its namespace.
			idx.Namespaces = p.namespacesOf(env)
			p.envs[env] = idx
		}
	}
	prev := p.current.Load()
	awaiting := p.opts.AwaitEndpoints && !p.endpointsSet
	if len(dirty) == 0 {
		// Only the sync times moved: readers see them, and nobody is woken
		// for data that did not change.
		next := prev.Resynced(maps.Clone(p.syncedAt))
		next.AwaitingEndpoints = awaiting
		p.current.Store(next)
		return
	}
	p.current.Store(&model.Snapshot{
		Envs:              maps.Clone(p.envs),
		EnvNames:          slices.Sorted(maps.Keys(p.envs)),
		NamespaceSyncedAt: maps.Clone(p.syncedAt),
		Namespaces:        prev.Namespaces,
		AwaitingEndpoints: awaiting,
	})
	// Stored first: whoever took the old channel before reading the old
	// snapshot is woken after the new one is readable.
	next := make(chan struct{})
	close(*p.published.Swap(&next))
}

func (p *Poller) namespacesOf(env string) []string {
	var out []string
	for _, st := range p.configMaps {
		if st.env == env && !slices.Contains(out, st.namespace) {
			out = append(out, st.namespace)
		}
	}
	slices.Sort(out)
	return out
}

func stateKey(namespace, name string) string { return namespace + "/" + name }

// olderThan reports whether resourceVersion a is known to precede b. Versions
// are opaque to clients, but the API server's are etcd revisions in practice;
// anything else is never treated as older.
func olderThan(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x < y
}

func namespaceLabel(ns string) string {
	if ns == "" {
		return "*"
	}
	return ns
}

// String describes the poller for logs.
func (p *Poller) String() string {
	return fmt.Sprintf("poller(namespaces=%v, interval=%s)", p.opts.Namespaces, p.opts.Interval)
}
