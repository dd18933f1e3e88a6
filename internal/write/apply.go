package write

import (
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/acme/registry-api/internal/model"
)

// identity is what names an instance: readers take it from the entry's JSON,
// not from its key.
type identity struct {
	app   string
	lease int64
}

// identityOf reads an entry's identity; ok is false for entries without one.
func identityOf(raw string) (identity, bool) {
	f, ok := model.ReadEntryFacts([]byte(raw))
	if !ok || !f.Identified() {
		return identity{}, false
	}
	return identity{f.AppID, f.LeaseID}, true
}

// identities caches identityOf by raw value across the attempts of a write:
// after a conflict most values are unchanged and need no parsing again.
type identities map[string]cachedIdentity

type cachedIdentity struct {
	id identity
	ok bool
}

func (c identities) of(raw string) (identity, bool) {
	if got, hit := c[raw]; hit {
		return got.id, got.ok
	}
	id, ok := identityOf(raw)
	c[raw] = cachedIdentity{id, ok}
	return id, ok
}

// memo is an op's last computed entry. Within one write the clock is fixed,
// so the same input gives the same output: a retry after a conflict reuses it
// and keeps the gap between its Get and its Update short.
type memo struct {
	valid bool
	key   string
	lease int64
	in    string
	out   string
	node  *model.Node
}

func (m *memo) get(key string, lease int64, in string) (string, *model.Node, bool) {
	if m.valid && m.key == key && m.lease == lease && m.in == in {
		return m.out, m.node, true
	}
	return "", nil, false
}

func (m *memo) put(key string, lease int64, in, out string, node *model.Node) {
	*m = memo{valid: true, key: key, lease: lease, in: in, out: out, node: node}
}

// applier applies operations, in order, to one fresh copy of a ConfigMap's
// data, and tracks its size. It counts keys as well as values, which the API
// server does not: the guard errs on the side of room to spare, and its
// number matches what an operator sees summing the data.
type applier struct {
	ref     ref
	data    map[string]string
	size    int
	limit   int
	changed bool
	runDate string
	zone    *time.Location
	known   identities
	// ids indexes entries by identity; built on first need, since the hot path
	// (a heartbeat of a canonical key) does not need it.
	ids map[identity][]string
}

func newApplier(r ref, cm *corev1.ConfigMap, limit int, now time.Time, zone *time.Location, known identities) *applier {
	data := cm.Data
	if data == nil {
		data = make(map[string]string)
	}
	size := 0
	for k, v := range data {
		size += len(k) + len(v)
	}
	for k, v := range cm.BinaryData {
		size += len(k) + len(v)
	}
	return &applier{
		ref: r, data: data, size: size, limit: limit,
		runDate: model.FormatRunDate(now, zone), zone: zone, known: known,
	}
}

func (a *applier) apply(o *op) {
	switch o.kind {
	case opRegister, opRegisterVersion:
		a.register(o)
	case opHeartbeat:
		a.heartbeat(o)
	case opDeregister:
		a.deregister(o)
	}
}

// set writes value under key. sameID says the entry's identity is unchanged,
// which spares re-indexing it.
func (a *applier) set(key, value string, sameID bool) {
	old, had := a.data[key]
	if had && old == value {
		return
	}
	if had {
		a.size -= len(key) + len(old)
		if !sameID {
			a.unindex(key, old)
		}
	}
	a.data[key] = value
	a.size += len(key) + len(value)
	a.changed = true
	if a.ids != nil && !(had && sameID) {
		if id, ok := a.known.of(value); ok {
			a.ids[id] = append(a.ids[id], key)
		}
	}
}

func (a *applier) del(key string) {
	old, had := a.data[key]
	if !had {
		return
	}
	a.unindex(key, old)
	delete(a.data, key)
	a.size -= len(key) + len(old)
	a.changed = true
}

func (a *applier) unindex(key, value string) {
	if a.ids == nil {
		return
	}
	if id, ok := a.known.of(value); ok {
		a.ids[id] = slices.DeleteFunc(a.ids[id], func(k string) bool { return k == key })
		if len(a.ids[id]) == 0 {
			delete(a.ids, id)
		}
	}
}

func (a *applier) index() map[identity][]string {
	if a.ids == nil {
		a.ids = make(map[identity][]string, len(a.data))
		for _, k := range slices.Sorted(maps.Keys(a.data)) {
			if id, ok := a.known.of(a.data[k]); ok {
				a.ids[id] = append(a.ids[id], k)
			}
		}
	}
	return a.ids
}

// find returns the keys holding entries of id, the canonical key first.
func (a *applier) find(id identity) []string {
	ck := model.CanonicalKey(id.app, id.lease)
	keys := slices.Clone(a.index()[id])
	slices.SortStableFunc(keys, func(x, y string) int {
		switch {
		case x == ck:
			return -1
		case y == ck:
			return 1
		}
		return 0
	})
	return keys
}

// taken reports whether lease already names an instance of app here.
func (a *applier) taken(app string, lease int64) bool {
	if _, ok := a.data[model.CanonicalKey(app, lease)]; ok {
		return true
	}
	_, ok := a.index()[identity{app, lease}]
	return ok
}

func (a *applier) register(o *op) {
	r := o.reg
	if o.generate {
		// Kept across retries unless the fresh copy now has it.
		for a.taken(r.AppID, o.leaseID) {
			o.leaseID++
		}
	}
	id := identity{r.AppID, o.leaseID}
	ck := model.CanonicalKey(id.app, id.lease)
	if v, ok := a.data[ck]; ok {
		if got, ok := a.known.of(v); ok && got != id {
			o.err = model.Errorf(model.CodeConflict, "key %s of registry ConfigMap %s in namespace %s holds the entry of %s lease %d; register with another lease id",
				ck, a.ref.name, a.ref.namespace, got.app, got.lease)
			return
		}
	}
	existing := a.find(id)
	base := ""
	if len(existing) > 0 {
		base = a.data[existing[0]]
	}
	// The guards judge every entry this registration replaces or removes.
	replaced := existing
	if _, ok := a.data[ck]; ok && !slices.Contains(existing, ck) {
		replaced = append(slices.Clone(existing), ck)
	}
	if err := a.allowed(o, replaced); err != nil {
		o.err = err
		return
	}
	value, node, ok := o.memo.get(ck, o.leaseID, base)
	if !ok {
		var err error
		value, err = buildEntry(base, r, o.leaseID, a.runDate)
		if err != nil {
			o.err = &model.Error{Code: model.CodeInternal, Message: "encoding the entry failed", Err: err}
			return
		}
		node, _, err = model.ParseEntry(a.ref.namespace, a.ref.env, ck, []byte(value), model.ParseOptions{Zone: a.zone})
		if err != nil {
			o.err = &model.Error{Code: model.CodeInternal, Message: "the entry written would not be readable", Err: err}
			return
		}
		o.memo.put(ck, o.leaseID, base, value, node)
	}

	// A version registration sent again, by every pod of a rollout, changes
	// nothing but the run_date it would write: it writes nothing.
	if o.kind == opRegisterVersion && len(existing) == 1 && existing[0] == ck {
		if fresh, ok := model.RefreshEntry(base, a.runDate); ok && fresh == value {
			kept, _, err := model.ParseEntry(a.ref.namespace, a.ref.env, ck, []byte(base), model.ParseOptions{Zone: a.zone})
			if err == nil {
				o.res = Result{Key: ck, LeaseID: o.leaseID, Node: kept, Raw: []byte(base), Unchanged: true}
				return
			}
		}
	}

	// The entry moves to the canonical key: duplicates of it go.
	size := a.size + len(ck) + len(value)
	if old, ok := a.data[ck]; ok {
		size -= len(ck) + len(old)
	}
	for _, k := range existing {
		if k != ck {
			size -= len(k) + len(a.data[k])
		}
	}
	// A registration that does not grow the ConfigMap is let through, like a
	// heartbeat, even when others already filled it past the limit.
	if size > a.limit && size > a.size {
		o.err = model.Errorf(model.CodeRegistryFull,
			"registry ConfigMap %s of env %s in namespace %s would grow to %d bytes of data, over the limit of %d: the env holds too many instances",
			a.ref.name, a.ref.env, a.ref.namespace, size, a.limit)
		return
	}
	for _, k := range existing {
		if k != ck {
			a.del(k)
		}
	}
	a.set(ck, value, false)
	o.res = Result{Key: ck, LeaseID: o.leaseID, Node: node, Raw: []byte(value), Created: len(existing) == 0}
}

// buildEntry writes r as the library does; over base (an existing entry) it
// replaces only the members r owns.
func buildEntry(base string, r *Registration, leaseID int64, runDate string) (string, error) {
	methods := make(map[string]bool, len(r.Methods))
	for _, m := range r.Methods {
		methods[m] = true
	}
	var prev []byte
	if base != "" {
		prev = []byte(base)
	}
	b, err := model.BuildEntry(prev, model.ServiceNode{
		ProtoCount: r.ProtoCount,
		LeaseID:    leaseID,
		RunDate:    runDate,
		Methods:    methods,
		Network:    r.Network,
		Kernel:     r.Kernel,
		Meta:       model.Meta{Env: r.Env, AppID: r.AppID, Version: r.Version},
	}, r.Extra)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (a *applier) heartbeat(o *op) {
	id := identity{o.appID, o.leaseID}
	// The hot path: the entry under its canonical key, no scan.
	ck := model.CanonicalKey(id.app, id.lease)
	if _, ok := a.data[ck]; ok {
		if u, ok := a.refreshed(o, ck); ok {
			if err := a.allowed(o, []string{ck}); err != nil {
				o.err = err
				return
			}
			a.commit(o, u)
			return
		}
	}
	var ups []refresh
	var keys []string
	for _, k := range a.find(id) {
		if k == ck {
			continue
		}
		if u, ok := a.refreshed(o, k); ok {
			ups = append(ups, u)
			keys = append(keys, k)
		}
	}
	if err := a.allowed(o, keys); err != nil {
		o.err = err
		return
	}
	if len(ups) == 0 {
		o.res = Result{}
		o.err = model.Errorf(model.CodeLeaseNotFound,
			"no readable entry for lease %d of app %s in env %s (namespace %s): it was deregistered or removed; register again",
			o.leaseID, o.appID, a.ref.env, a.ref.namespace)
		return
	}
	for _, u := range ups {
		a.commit(o, u)
	}
}

// refresh is an entry with its run_date rewritten, not yet applied.
type refresh struct {
	key   string
	fresh string
	node  *model.Node
}

// refreshed rewrites the run_date of the entry under key if it is a readable
// entry of o's instance; ok is false otherwise.
func (a *applier) refreshed(o *op, key string) (refresh, bool) {
	raw := a.data[key]
	fresh, node, ok := o.memo.get(key, o.leaseID, raw)
	if !ok {
		if fresh, ok = model.RefreshEntry(raw, a.runDate); !ok {
			return refresh{}, false
		}
		// Readers skip an entry that does not parse: refreshing it would keep
		// nothing alive.
		var err error
		node, _, err = model.ParseEntry(a.ref.namespace, a.ref.env, key, []byte(fresh), model.ParseOptions{Zone: a.zone})
		if err != nil || node.AppID != o.appID || node.LeaseID != o.leaseID {
			return refresh{}, false
		}
		o.memo.put(key, o.leaseID, raw, fresh, node)
	}
	return refresh{key: key, fresh: fresh, node: node}, true
}

// commit applies a refresh; the first one applied is o's result.
func (a *applier) commit(o *op, u refresh) {
	a.set(u.key, u.fresh, true)
	if o.res.Node == nil {
		o.res = Result{Key: u.key, LeaseID: o.leaseID, Node: u.node, Raw: []byte(u.fresh)}
	}
}

// allowed runs o's guards on the entries under keys, or on no entry when
// there are none.
func (a *applier) allowed(o *op, keys []string) error {
	if len(o.guards) == 0 {
		return nil
	}
	if len(keys) == 0 {
		return o.allowed(nil)
	}
	for _, k := range keys {
		if err := o.allowed([]byte(a.data[k])); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) deregister(o *op) {
	id := identity{o.appID, o.leaseID}
	ck := model.CanonicalKey(id.app, id.lease)
	keys := a.find(id)
	// An unreadable value under the instance's own key goes too; one naming
	// another instance stays.
	if v, ok := a.data[ck]; ok && !slices.Contains(keys, ck) {
		if _, readable := a.known.of(v); !readable {
			keys = append(keys, ck)
		}
	}
	if err := a.allowed(o, keys); err != nil {
		o.err = err
		return
	}
	for _, k := range keys {
		a.del(k)
	}
	o.res = Result{Key: ck, LeaseID: o.leaseID}
}
