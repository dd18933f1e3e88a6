package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

func configMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

func newMemory(t testing.TB, seed ...corev1.ConfigMap) *Memory {
	t.Helper()
	m, err := NewMemory(seed...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rv(t testing.TB, cm *corev1.ConfigMap) int64 {
	t.Helper()
	n, err := strconv.ParseInt(cm.ResourceVersion, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q: %v", cm.ResourceVersion, err)
	}
	return n
}

func mustGet(t testing.TB, s Store, ns, name string) *corev1.ConfigMap {
	t.Helper()
	cm, err := s.Get(t.Context(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

func listVersion(t testing.TB, l *corev1.ConfigMapList) int64 {
	t.Helper()
	return rv(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{ResourceVersion: l.ResourceVersion}})
}

func names(cms []corev1.ConfigMap) []string {
	out := make([]string, len(cms))
	for i, cm := range cms {
		out[i] = cm.Namespace + "/" + cm.Name
	}
	return out
}

func TestMemoryCreateGet(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t)
	in := configMap("firefly", "ff-registry-prod", map[string]string{"a.1": "{}"})
	in.Labels = map[string]string{"l": "v"}
	out, err := m.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.ResourceVersion == "" || out.CreationTimestamp.IsZero() {
		t.Errorf("Create returned %+v without resourceVersion or creationTimestamp", out.ObjectMeta)
	}
	if in.ResourceVersion != "" {
		t.Errorf("Create modified its argument: resourceVersion %q", in.ResourceVersion)
	}
	got := mustGet(t, m, "firefly", "ff-registry-prod")
	if !reflect.DeepEqual(got, out) {
		t.Errorf("Get = %+v, want what Create returned %+v", got, out)
	}
	if !reflect.DeepEqual(got.Data, in.Data) || !reflect.DeepEqual(got.Labels, in.Labels) {
		t.Errorf("Get = %+v, want the data and labels created", got)
	}

	if _, err := m.Create(ctx, configMap("firefly", "ff-registry-prod", nil)); !apierrors.IsAlreadyExists(err) {
		t.Errorf("Create existing: %v, want AlreadyExists", err)
	}
	if got := mustGet(t, m, "firefly", "ff-registry-prod"); !reflect.DeepEqual(got, out) {
		t.Errorf("a failed Create changed the stored object: %+v", got)
	}
	// The same name in another namespace is another object.
	if _, err := m.Create(ctx, configMap("other", "ff-registry-prod", nil)); err != nil {
		t.Errorf("Create in another namespace: %v", err)
	}
	for _, nn := range [][2]string{{"firefly", "ff-registry-dev"}, {"nowhere", "ff-registry-prod"}, {"", "ff-registry-prod"}} {
		_, err := m.Get(ctx, nn[0], nn[1])
		if !apierrors.IsNotFound(err) {
			t.Errorf("Get %s/%s: %v, want NotFound", nn[0], nn[1], err)
		}
	}
}

func TestMemoryList(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t)
	var last string
	for _, nn := range [][2]string{{"b", "y"}, {"a", "z"}, {"b", "x"}, {"a", "ff-registry-prod"}, {"c", "a"}} {
		created, err := m.Create(ctx, configMap(nn[0], nn[1], map[string]string{"k": nn[0] + nn[1]}))
		if err != nil {
			t.Fatal(err)
		}
		last = created.ResourceVersion
	}
	// Like the API server's, a list is read at the store's latest version,
	// whichever namespace it covers.
	for _, ns := range []string{"", "a", "missing"} {
		if got, _ := m.List(ctx, ns); got.ResourceVersion != last {
			t.Errorf("List(%q) read at version %q, want the latest write's %q", ns, got.ResourceVersion, last)
		}
	}
	tests := []struct {
		ns   string
		want []string
	}{
		{"", []string{"a/ff-registry-prod", "a/z", "b/x", "b/y", "c/a"}},
		{"a", []string{"a/ff-registry-prod", "a/z"}},
		{"b", []string{"b/x", "b/y"}},
		{"missing", []string{}},
	}
	for _, tt := range tests {
		got, err := m.List(ctx, tt.ns)
		if err != nil {
			t.Fatal(err)
		}
		if n := names(got.Items); !reflect.DeepEqual(n, tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.ns, n, tt.want)
		}
		for _, cm := range got.Items {
			if cm.Data["k"] != cm.Namespace+cm.Name || cm.ResourceVersion == "" {
				t.Errorf("List(%q) item %s/%s = %+v", tt.ns, cm.Namespace, cm.Name, cm)
			}
		}
	}
}

// ListMeta is List without the data: the same names in the same order, each
// with its resourceVersion, at the same version of the store.
func TestMemoryListMeta(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t, *configMap("b", "y", map[string]string{"k": "1"}), *configMap("a", "z", map[string]string{"k": "2"}),
		*configMap("b", "x", nil))
	for _, ns := range []string{"", "b", "missing"} {
		full, err := m.List(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		meta, err := m.ListMeta(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		if meta.ResourceVersion != full.ResourceVersion || len(meta.Items) != len(full.Items) {
			t.Fatalf("ListMeta(%q) = %d items at %q, List = %d at %q", ns, len(meta.Items), meta.ResourceVersion,
				len(full.Items), full.ResourceVersion)
		}
		for i, item := range meta.Items {
			if !reflect.DeepEqual(item.ObjectMeta, full.Items[i].ObjectMeta) {
				t.Errorf("ListMeta(%q)[%d] = %+v, want %+v", ns, i, item.ObjectMeta, full.Items[i].ObjectMeta)
			}
		}
	}
	// The metadata is a copy too.
	meta, _ := m.ListMeta(ctx, "a")
	meta.Items[0].ResourceVersion = "999"
	if got := mustGet(t, m, "a", "z"); got.ResourceVersion == "999" {
		t.Error("ListMeta handed out the store's own metadata")
	}
}

// Delete removes a ConfigMap under a new version of the store, so that a
// list read after it is newer than every object it lacks.
func TestMemoryDelete(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t, *configMap("a", "x", nil), *configMap("a", "y", nil))
	before, _ := m.List(ctx, "")
	if err := m.Delete(ctx, "a", "x"); err != nil {
		t.Fatal(err)
	}
	after, _ := m.List(ctx, "")
	if n := names(after.Items); !reflect.DeepEqual(n, []string{"a/y"}) {
		t.Errorf("after Delete, List = %q", n)
	}
	if a, b := listVersion(t, after), listVersion(t, before); a <= b {
		t.Errorf("list version after Delete = %d, before = %d: want newer", a, b)
	}
	if _, err := m.Get(ctx, "a", "x"); !apierrors.IsNotFound(err) {
		t.Errorf("Get after Delete: %v, want NotFound", err)
	}
	if err := m.Delete(ctx, "a", "x"); !apierrors.IsNotFound(err) {
		t.Errorf("Delete of a missing ConfigMap: %v, want NotFound", err)
	}
}

// Callers own what they pass in and get back: the store keeps its own copies.
func TestMemoryReturnsCopies(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t)
	in := configMap("ns", "cm", map[string]string{"k": "v"})
	created, err := m.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := mustGet(t, m, "ns", "cm").DeepCopy() // independent of the store even if Get leaked

	mutate := func(cm *corev1.ConfigMap) {
		cm.Data["k"] = "changed"
		cm.Data["new"] = "x"
		cm.Labels = map[string]string{"x": "y"}
		cm.ResourceVersion = "999"
	}
	mutate(in)
	mutate(created)
	mutate(mustGet(t, m, "ns", "cm"))
	list, _ := m.List(ctx, "")
	mutate(&list.Items[0])
	list, _ = m.List(ctx, "ns")
	mutate(&list.Items[0])
	if got := mustGet(t, m, "ns", "cm"); !reflect.DeepEqual(got, want) {
		t.Fatalf("mutating returned objects changed the store:\n%+v\nwant\n%+v", got, want)
	}

	upd := mustGet(t, m, "ns", "cm")
	upd.Data["k"] = "v2"
	updated, err := m.Update(ctx, upd)
	if err != nil {
		t.Fatal(err)
	}
	want = mustGet(t, m, "ns", "cm").DeepCopy()
	mutate(upd)
	mutate(updated)
	if got := mustGet(t, m, "ns", "cm"); !reflect.DeepEqual(got, want) || got.Data["k"] != "v2" {
		t.Fatalf("mutating Update's argument or result changed the store: %+v", got)
	}

	seed := *configMap("ns", "seeded", map[string]string{"k": "v"})
	m = newMemory(t, seed)
	seed.Data["k"] = "changed"
	if got := mustGet(t, m, "ns", "seeded"); got.Data["k"] != "v" {
		t.Fatalf("mutating the seed changed the store: %+v", got)
	}
}

func TestMemoryResourceVersion(t *testing.T) {
	ctx := t.Context()
	m := newMemory(t)
	var last int64
	bump := func(step string) func(*corev1.ConfigMap, error) *corev1.ConfigMap {
		return func(cm *corev1.ConfigMap, err error) *corev1.ConfigMap {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", step, err)
			}
			if n := rv(t, cm); n <= last {
				t.Fatalf("%s: resourceVersion %d, not above %d", step, n, last)
			} else {
				last = n
			}
			if got := mustGet(t, m, cm.Namespace, cm.Name); got.ResourceVersion != cm.ResourceVersion {
				t.Fatalf("%s: stored resourceVersion %s, returned %s", step, got.ResourceVersion, cm.ResourceVersion)
			}
			return cm
		}
	}
	a := bump("create a")(m.Create(ctx, configMap("ns", "a", nil)))
	b := bump("create b")(m.Create(ctx, configMap("ns", "b", nil)))
	a.Data = map[string]string{"k": "1"}
	a = bump("update a")(m.Update(ctx, a))
	a.Data["k"] = "2"
	a = bump("update a again")(m.Update(ctx, a))
	b.Data = map[string]string{"k": "1"}
	bump("update b")(m.Update(ctx, b))

	// Failed writes leave the resourceVersion alone.
	stale := a.DeepCopy()
	stale.ResourceVersion = strconv.FormatInt(rv(t, a)-1, 10)
	if _, err := m.Update(ctx, stale); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v", err)
	}
	if _, err := m.Create(ctx, configMap("ns", "a", nil)); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create existing: %v", err)
	}
	a.Data["bad/key"] = "x"
	if _, err := m.Update(ctx, a); !apierrors.IsInvalid(err) {
		t.Fatalf("invalid update: %v", err)
	}
	c := bump("create c")(m.Create(ctx, configMap("ns", "c", nil)))
	if rv(t, c) != last || last != 6 {
		t.Errorf("resourceVersion after 6 successful writes = %d: failed writes bumped it", last)
	}
}

func TestMemoryUpdate(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name    string
		rv      func(current string) string
		ns      string
		check   func(error) bool
		applied bool
	}{
		{"current resourceVersion", func(cur string) string { return cur }, "ns", func(err error) bool { return err == nil }, true},
		{"empty resourceVersion is unconditional", func(string) string { return "" }, "ns", func(err error) bool { return err == nil }, true},
		{"stale resourceVersion", func(cur string) string { return "1" }, "ns", apierrors.IsConflict, false},
		{"future resourceVersion", func(cur string) string { return "1000" }, "ns", apierrors.IsConflict, false},
		{"garbage resourceVersion", func(cur string) string { return "x" }, "ns", apierrors.IsConflict, false},
		{"missing object", func(cur string) string { return cur }, "elsewhere", apierrors.IsNotFound, false},
		{"missing object, empty resourceVersion", func(string) string { return "" }, "elsewhere", apierrors.IsNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemory(t, *configMap("ns", "cm", map[string]string{"k": "v0"}))
			first := mustGet(t, m, "ns", "cm")
			first.Data["k"] = "v1"
			if _, err := m.Update(ctx, first); err != nil { // resourceVersion is now 2
				t.Fatal(err)
			}
			before := mustGet(t, m, "ns", "cm")
			upd := before.DeepCopy()
			upd.Namespace = tt.ns
			upd.ResourceVersion = tt.rv(before.ResourceVersion)
			upd.Data["k"] = "v2"
			out, err := m.Update(ctx, upd)
			if !tt.check(err) {
				t.Fatalf("Update: %v", err)
			}
			after := mustGet(t, m, "ns", "cm")
			if !tt.applied {
				if out != nil {
					t.Errorf("Update returned %+v with error", out)
				}
				if !reflect.DeepEqual(after, before) {
					t.Errorf("failed Update changed the store: %+v", after)
				}
				return
			}
			if after.Data["k"] != "v2" || !reflect.DeepEqual(out, after) || rv(t, after) <= rv(t, before) {
				t.Errorf("Update returned %+v, stored %+v", out, after)
			}
			if !after.CreationTimestamp.Equal(&before.CreationTimestamp) {
				t.Errorf("Update changed creationTimestamp")
			}
		})
	}
	// A conflict reads like the API server's, so callers know to retry.
	m := newMemory(t, *configMap("ns", "cm", nil))
	_, err := m.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm", ResourceVersion: "7"}})
	if want := `Operation cannot be fulfilled on configmaps "cm": the object has been modified; please apply your changes to the latest version and try again`; err == nil || err.Error() != want {
		t.Errorf("conflict error = %v, want %s", err, want)
	}
}

// The keys of the API server's data validation, with oracle
// validation.IsConfigMapKey (which the API server itself runs).
func TestMemoryDataKeys(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		key   string
		valid bool
	}{
		{"user-service.1795695862709570046", true},
		{"user-service/1795695862709570046", false}, // the library's key
		{"A_b-c.d", true},
		{".hidden", true},
		{"a..b", true},
		{"a.", true},
		{strings.Repeat("k", 253), true},
		{strings.Repeat("k", 254), false},
		{"", false},
		{".", false},
		{"..", false},
		{"..a", false},
		{"a b", false},
		{"a:b", false},
		{"ключ", false},
		{"a\n", false},
	}
	for _, tt := range tests {
		msgs := validation.IsConfigMapKey(tt.key)
		if (len(msgs) == 0) != tt.valid {
			t.Fatalf("test table: the API server says %q is valid=%v (%q)", tt.key, len(msgs) == 0, msgs)
		}
		for _, op := range []string{"create", "update"} {
			m := newMemory(t, *configMap("ns", "existing", nil))
			cm := configMap("ns", "new", map[string]string{tt.key: "{}", "ok.1": "{}"})
			var err error
			if op == "update" {
				cm.Name = "existing"
				_, err = m.Update(ctx, cm)
			} else {
				_, err = m.Create(ctx, cm)
			}
			if tt.valid {
				if err != nil {
					t.Errorf("%s with key %q: %v", op, tt.key, err)
				}
				continue
			}
			if !apierrors.IsInvalid(err) {
				t.Errorf("%s with key %q: %v, want Invalid", op, tt.key, err)
				continue
			}
			for _, msg := range msgs {
				want := fmt.Sprintf("data[%s]: Invalid value: %q: %s", tt.key, tt.key, msg)
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s with key %q: error\n %v\ndoes not contain\n %s", op, tt.key, err, want)
				}
			}
			var status apierrors.APIStatus
			if !errors.As(err, &status) || status.Status().Code != 422 {
				t.Errorf("%s with key %q: error %v is not a 422 status", op, tt.key, err)
			}
			if got, _ := m.List(ctx, ""); len(got.Items) != 1 || len(got.Items[0].Data) != 0 {
				t.Errorf("%s with key %q: the invalid object was stored", op, tt.key)
			}
		}
	}
	// binaryData keys follow the same rule.
	cm := configMap("ns", "cm", nil)
	cm.BinaryData = map[string][]byte{"a/b": {1}}
	if _, err := newMemory(t).Create(ctx, cm); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "binaryData[a/b]: Invalid value") {
		t.Errorf("binaryData key a/b: %v, want Invalid", err)
	}
	// Exactly what a real API server answers.
	_, err := newMemory(t).Create(ctx, configMap("ns", "ff-registry-prod", map[string]string{"user-service/1795695862709570046": "{}"}))
	const want = `ConfigMap "ff-registry-prod" is invalid: data[user-service/1795695862709570046]: Invalid value: "user-service/1795695862709570046": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`
	if err == nil || err.Error() != want {
		t.Errorf("error =\n %v\nwant\n %s", err, want)
	}
}

// The API server limits the total size of the values of data and binaryData
// (not the keys) to 1 MiB.
func TestMemorySizeLimit(t *testing.T) {
	ctx := t.Context()
	const limit = MaxConfigMapBytes
	if limit != 1<<20 {
		t.Fatalf("MaxConfigMapBytes = %d", limit)
	}
	big := func(n int) string { return strings.Repeat("v", n) }
	tests := []struct {
		name   string
		data   map[string]string
		binary map[string][]byte
		ok     bool
	}{
		{"one value at the limit", map[string]string{"user-service.1795695862709570046": big(limit)}, nil, true},
		{"one value over the limit", map[string]string{"k": big(limit + 1)}, nil, false},
		{"values summing to the limit", map[string]string{"a": big(limit / 2), "b": big(limit/2 - 10), "c": big(10)}, nil, true},
		{"values summing past the limit", map[string]string{"a": big(limit / 2), "b": big(limit/2 - 10), "c": big(11)}, nil, false},
		{"data and binaryData at the limit", map[string]string{"a": big(limit - 100)}, map[string][]byte{"b": make([]byte, 100)}, true},
		{"data and binaryData past the limit", map[string]string{"a": big(limit - 100)}, map[string][]byte{"b": make([]byte, 101)}, false},
		{"many small entries past the limit", manyEntries(2700, 400), nil, false},
		{"many small entries under the limit", manyEntries(2500, 400), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMemory(t, *configMap("ns", "existing", map[string]string{"k": "v"}))
			cm := configMap("ns", "new", tt.data)
			cm.BinaryData = tt.binary
			_, errCreate := m.Create(ctx, cm)
			cm.Name = "existing"
			_, errUpdate := m.Update(ctx, cm)
			for op, err := range map[string]error{"create": errCreate, "update": errUpdate} {
				if tt.ok {
					if err != nil {
						t.Errorf("%s: %v", op, err)
					}
					continue
				}
				if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "Too long: may not be more than 1048576 bytes") {
					t.Errorf("%s: %v, want Invalid: Too long", op, err)
				}
			}
			if !tt.ok {
				if got := mustGet(t, m, "ns", "existing"); !reflect.DeepEqual(got.Data, map[string]string{"k": "v"}) {
					t.Errorf("an oversized update changed the store")
				}
			}
		})
	}
}

func manyEntries(n, size int) map[string]string {
	out := make(map[string]string, n)
	for i := range n {
		out[fmt.Sprintf("app.%d", i)] = strings.Repeat("x", size)
	}
	return out
}

func TestMemoryCanceledContext(t *testing.T) {
	m := newMemory(t, *configMap("ns", "cm", nil))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	cm := configMap("ns", "cm", nil)
	errs := map[string]error{}
	_, errs["list"] = m.List(ctx, "")
	_, errs["list metadata"] = m.ListMeta(ctx, "")
	_, errs["get"] = m.Get(ctx, "ns", "cm")
	errs["delete"] = m.Delete(ctx, "ns", "cm")
	_, errs["create"] = m.Create(ctx, configMap("ns", "new", nil))
	_, errs["update"] = m.Update(ctx, cm)
	for op, err := range errs {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v, want context.Canceled", op, err)
		}
	}
	if got, _ := m.List(t.Context(), ""); len(got.Items) != 1 {
		t.Errorf("writes with a canceled context were applied: %q", names(got.Items))
	}
}

func TestNewMemory(t *testing.T) {
	seed := configMap("ns", "cm", map[string]string{"k": "v"})
	seed.ResourceVersion = "12345"
	m := newMemory(t, *seed, *configMap("ns2", "cm", nil))
	got := mustGet(t, m, "ns", "cm")
	if got.ResourceVersion == "12345" || got.Data["k"] != "v" {
		t.Errorf("seeded object = %+v", got)
	}
	// The seed's resourceVersion does not make the first Update conflict.
	got.Data["k"] = "v2"
	if _, err := m.Update(t.Context(), got); err != nil {
		t.Errorf("Update after seed: %v", err)
	}

	tests := []struct {
		name string
		seed []corev1.ConfigMap
		want string
	}{
		{"no namespace", []corev1.ConfigMap{*configMap("", "cm", nil)}, `seed configmap "cm" has no namespace`},
		{"duplicate", []corev1.ConfigMap{*configMap("ns", "cm", nil), *configMap("ns", "cm", nil)}, "seed configmap ns/cm: "},
		{"invalid key", []corev1.ConfigMap{*configMap("ns", "cm", map[string]string{"a/1": "{}"})}, "seed configmap ns/cm: "},
	}
	for _, tt := range tests {
		if _, err := NewMemory(tt.seed...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: NewMemory error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

// Concurrent read-modify-write cycles, as heartbeating registry-api replicas
// do: with RetryOnConflict no write is lost.
func TestMemoryConcurrentUpdaters(t *testing.T) {
	const writers = 20
	ctx := t.Context()
	m := newMemory(t, *configMap("ns", "ff-registry-prod", nil))
	start := rv(t, mustGet(t, m, "ns", "ff-registry-prod"))
	// A writer loses a round only to another writer's success, so it needs at
	// most writers attempts; no sleeping between them.
	backoff := wait.Backoff{Steps: writers}
	var conflicts sync.Map
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			attempts := 0
			errs[i] = retry.RetryOnConflict(backoff, func() error {
				attempts++
				cm, err := m.Get(ctx, "ns", "ff-registry-prod")
				if err != nil {
					return err
				}
				if cm.Data == nil {
					cm.Data = map[string]string{}
				}
				cm.Data[fmt.Sprintf("app.%d", i)] = strconv.Itoa(i)
				_, err = m.Update(ctx, cm)
				return err
			})
			conflicts.Store(i, attempts-1)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	cm := mustGet(t, m, "ns", "ff-registry-prod")
	want := map[string]string{}
	for i := range writers {
		want[fmt.Sprintf("app.%d", i)] = strconv.Itoa(i)
	}
	if !maps.Equal(cm.Data, want) {
		t.Errorf("data = %v, want every writer's key %v", cm.Data, want)
	}
	if got := rv(t, cm); got != start+writers {
		t.Errorf("resourceVersion went from %d to %d, want exactly %d writes", start, got, writers)
	}
	total := 0
	conflicts.Range(func(_, v any) bool { total += v.(int); return true })
	t.Logf("%d conflicts retried", total)
}

func TestMemoryNoOpUpdateKeepsResourceVersion(t *testing.T) {
	ctx := context.Background()
	m, err := NewMemory(corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "firefly", Name: "ff-registry-prod"},
		Data:       map[string]string{"a.1": "{}"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := m.Get(ctx, "firefly", "ff-registry-prod")
	if err != nil {
		t.Fatal(err)
	}
	same, err := m.Update(ctx, cur.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	if same.ResourceVersion != cur.ResourceVersion {
		t.Fatalf("no-op update moved resourceVersion %s -> %s", cur.ResourceVersion, same.ResourceVersion)
	}
	changed := cur.DeepCopy()
	changed.Data["a.1"] = `{"x":1}`
	next, err := m.Update(ctx, changed)
	if err != nil {
		t.Fatal(err)
	}
	if next.ResourceVersion == cur.ResourceVersion {
		t.Fatal("a real change kept the resourceVersion")
	}
}
