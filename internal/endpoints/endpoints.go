// Package endpoints is the registry's second source of Kubernetes truth,
// beside the ConfigMaps: which endpoints of the Services that version
// registrations name are ready, and the version label of their pods. It
// follows EndpointSlices and pods' metadata with client-go informers, only in
// the namespaces that hold such Services, and hands each new view to a Sink
// (watch.Poller.SetEndpoints), which indexes it into the next snapshot. It
// polls nothing and writes nothing.
package endpoints

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/acme/registry-api/internal/model"
)

// VersionLabel is the pod label that names a pod's version, as Istio's
// subsets select it.
const VersionLabel = "version"

// serviceIndex indexes EndpointSlices by the Service they belong to.
const serviceIndex = "service"

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// Sink receives each new view of the endpoints.
type Sink func(model.Endpoints)

// Options configure a Source. Client, Metadata, Snapshots and Sink are
// required.
type Options struct {
	// Client lists and watches EndpointSlices.
	Client kubernetes.Interface
	// Metadata lists and watches pods' metadata alone.
	Metadata metadata.Interface
	// Snapshots say which Services version registrations name.
	Snapshots model.SnapshotNotifier
	Sink      Sink
	// SyncTimeout is how long a namespace's informers may take to read it
	// before its Services count no endpoints (DefaultSyncTimeout): a Role
	// that does not grant them, or a Service named in a namespace nobody
	// granted, must not hold every other endpoint back.
	SyncTimeout time.Duration
	Log         zerolog.Logger
}

// DefaultSyncTimeout is Options.SyncTimeout's default.
const DefaultSyncTimeout = 10 * time.Second

func (o *Options) validate() error {
	if o.Client == nil || o.Metadata == nil || o.Snapshots == nil || o.Sink == nil {
		return errors.New("endpoints: a client, a metadata client, snapshots and a sink are required")
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	return nil
}

// Source follows the endpoints of the Services that version registrations
// name.
type Source struct {
	opts Options
	log  zerolog.Logger
	// changed is signalled by every informer event and sync.
	changed chan struct{}

	mu         sync.Mutex
	namespaces map[string]*namespaceWatch
}

// namespaceWatch is the informers of one namespace.
type namespaceWatch struct {
	stop   context.CancelFunc
	slices cache.SharedIndexInformer
	pods   cache.SharedIndexInformer
	synced chan struct{}
	// late is closed when the informers have not synced within
	// SyncTimeout; they go on trying.
	late chan struct{}
}

// New returns a Source; Run starts it.
func New(opts Options) (*Source, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &Source{
		opts:       opts,
		log:        opts.Log.With().Str("component", "endpoints").Logger(),
		changed:    make(chan struct{}, 1),
		namespaces: make(map[string]*namespaceWatch),
	}, nil
}

// Run follows endpoints until ctx ends: after each published snapshot it
// watches the namespaces of the Services it names, and after each change
// of what the informers hold it hands the Sink a new view.
func (s *Source) Run(ctx context.Context) {
	defer s.stopAll()
	var last model.Endpoints
	sent := false
	for {
		snap := s.opts.Snapshots.Snapshot()
		published := s.opts.Snapshots.Published()
		wanted := snap.Services()
		s.watchNamespaces(ctx, wanted)
		var prev model.Endpoints
		if sent {
			prev = last
		}
		if eps, ok := s.view(wanted, prev); ok && (!sent || !equal(last, eps)) {
			s.opts.Sink(eps)
			last, sent = eps, true
		}
		select {
		case <-ctx.Done():
			return
		case <-published:
		case <-s.changed:
		}
	}
}

func (s *Source) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// watchNamespaces starts the informers of the namespaces wanted names and
// stops those of namespaces it no longer names.
func (s *Source) watchNamespaces(ctx context.Context, wanted []model.ServiceRef) {
	need := make(map[string]struct{})
	for _, svc := range wanted {
		need[svc.Namespace] = struct{}{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ns, w := range s.namespaces {
		if _, ok := need[ns]; !ok {
			w.stop()
			delete(s.namespaces, ns)
			s.log.Info().Str("namespace", ns).Msg("stopped following endpoints: no version registration names a Service here")
		}
	}
	for ns := range need {
		if _, ok := s.namespaces[ns]; !ok {
			s.namespaces[ns] = s.startNamespace(ctx, ns)
			s.log.Info().Str("namespace", ns).Msg("following EndpointSlices and pods' version labels")
		}
	}
}

func (s *Source) startNamespace(ctx context.Context, ns string) *namespaceWatch {
	ctx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(s.opts.Client, 0,
		informers.WithNamespace(ns), informers.WithTransform(trimSlice))
	sliceInformer := factory.Discovery().V1().EndpointSlices().Informer()
	_ = sliceInformer.AddIndexers(cache.Indexers{serviceIndex: func(obj any) ([]string, error) {
		if es, ok := obj.(*discoveryv1.EndpointSlice); ok {
			if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
				return []string{name}, nil
			}
		}
		return nil, nil
	}})
	meta := metadatainformer.NewFilteredSharedInformerFactory(s.opts.Metadata, 0, ns, nil)
	podInformer := meta.ForResource(podsResource).Informer()
	_ = podInformer.SetTransform(trimPod)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.signal() },
		UpdateFunc: func(any, any) { s.signal() },
		DeleteFunc: func(any) { s.signal() },
	}
	_, _ = sliceInformer.AddEventHandler(handler)
	_, _ = podInformer.AddEventHandler(handler)
	factory.Start(ctx.Done())
	meta.Start(ctx.Done())
	w := &namespaceWatch{stop: cancel, slices: sliceInformer, pods: podInformer, synced: make(chan struct{}), late: make(chan struct{})}
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), sliceInformer.HasSynced, podInformer.HasSynced) {
			close(w.synced)
			s.signal()
		}
	}()
	timer := time.AfterFunc(s.opts.SyncTimeout, func() {
		select {
		case <-w.synced:
			return
		default:
		}
		close(w.late)
		s.log.Error().Str("namespace", ns).Dur("after", s.opts.SyncTimeout).
			Msg("could not read EndpointSlices and pods here (does a Role grant list and watch of endpointslices and pods?); " +
				"version registrations of its Services count no endpoints until it can")
		s.signal()
	})
	context.AfterFunc(ctx, func() { timer.Stop() })
	return w
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (s *Source) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ns, w := range s.namespaces {
		w.stop()
		delete(s.namespaces, ns)
	}
}

// view computes the endpoints of wanted from the informers' caches. A
// namespace not read yet keeps what prev says of its Services; before the
// first view (prev nil), ok is false until every namespace has been read,
// so that a replica that starts never reports a version down for lack of
// having read its endpoints. A namespace that cannot be read within
// SyncTimeout counts no endpoints.
func (s *Source) view(wanted []model.ServiceRef, prev model.Endpoints) (model.Endpoints, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(model.Endpoints, len(wanted))
	for _, svc := range wanted {
		w := s.namespaces[svc.Namespace]
		if !closed(w.synced) {
			switch {
			case closed(w.late):
			case prev == nil:
				return nil, false
			case prev[svc] != nil:
				out[svc] = prev[svc]
			}
			continue
		}
		objs, _ := w.slices.GetIndexer().ByIndex(serviceIndex, svc.Name)
		found := make([]*discoveryv1.EndpointSlice, 0, len(objs))
		for _, o := range objs {
			found = append(found, o.(*discoveryv1.EndpointSlice))
		}
		out[svc] = Of(found, func(pod string) string {
			obj, ok, _ := w.pods.GetIndexer().GetByKey(svc.Namespace + "/" + pod)
			if !ok {
				return ""
			}
			return obj.(*metav1.PartialObjectMetadata).Labels[VersionLabel]
		})
	}
	return out, true
}

// Of reads one Service's endpoints from its EndpointSlices, with the
// version label of each endpoint's pod from versionOf. An endpoint counts
// as ready when its ready condition is true or unknown (as the API says
// consumers should read it) and it is not terminating. An endpoint in
// several slices (one per address family) counts once.
func Of(eps []*discoveryv1.EndpointSlice, versionOf func(pod string) string) *model.ServiceEndpoints {
	out := &model.ServiceEndpoints{}
	at := make(map[string]int)
	for _, es := range eps {
		for _, e := range es.Endpoints {
			name := endpointName(e)
			if name == "" {
				continue
			}
			version := ""
			if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
				version = versionOf(e.TargetRef.Name)
			}
			if version != "" {
				out.Labelled = true
			}
			c := e.Conditions
			if (c.Ready != nil && !*c.Ready) || (c.Terminating != nil && *c.Terminating) {
				continue
			}
			ep := model.Endpoint{Pod: name, Version: version}
			if e.NodeName != nil {
				ep.Node = *e.NodeName
			}
			if e.Zone != nil {
				ep.Zone = *e.Zone
			}
			if i, dup := at[name]; dup {
				// Another address family's slice: what either tells.
				have := &out.Ready[i]
				have.Node = cmp.Or(have.Node, ep.Node)
				have.Zone = cmp.Or(have.Zone, ep.Zone)
				continue
			}
			at[name] = len(out.Ready)
			out.Ready = append(out.Ready, ep)
		}
	}
	slices.SortFunc(out.Ready, func(a, b model.Endpoint) int { return cmp.Compare(a.Pod, b.Pod) })
	return out
}

// endpointName names an endpoint by its pod, or by its first address when
// it is not a pod's.
func endpointName(e discoveryv1.Endpoint) string {
	if e.TargetRef != nil && e.TargetRef.Name != "" {
		return e.TargetRef.Name
	}
	if len(e.Addresses) > 0 {
		return e.Addresses[0]
	}
	return ""
}

func equal(a, b model.Endpoints) bool {
	if len(a) != len(b) {
		return false
	}
	for svc, e := range a {
		if o, ok := b[svc]; !ok || !e.Equal(o) {
			return false
		}
	}
	return true
}

// trimSlice keeps of an EndpointSlice what Of reads, so that the cache of
// a namespace holds names and conditions, not ports, hints and managed
// fields.
func trimSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	out := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: es.Name, Namespace: es.Namespace, UID: es.UID, ResourceVersion: es.ResourceVersion,
			Labels: map[string]string{discoveryv1.LabelServiceName: es.Labels[discoveryv1.LabelServiceName]},
		},
		AddressType: es.AddressType,
		Endpoints:   make([]discoveryv1.Endpoint, len(es.Endpoints)),
	}
	for i, e := range es.Endpoints {
		t := discoveryv1.Endpoint{Conditions: e.Conditions, NodeName: e.NodeName, Zone: e.Zone}
		if e.TargetRef != nil {
			t.TargetRef = &corev1.ObjectReference{Kind: e.TargetRef.Kind, Name: e.TargetRef.Name}
		} else if len(e.Addresses) > 0 {
			t.Addresses = e.Addresses[:1]
		}
		out.Endpoints[i] = t
	}
	return out, nil
}

// trimPod keeps of a pod's metadata its name and version label.
func trimPod(obj any) (any, error) {
	p, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	out := &metav1.PartialObjectMetadata{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion},
	}
	if v, ok := p.Labels[VersionLabel]; ok {
		out.Labels = map[string]string{VersionLabel: v}
	}
	return out, nil
}
