package store

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
)

func fakeKube(objs ...runtime.Object) (*Kube, *fake.Clientset) {
	cs := fake.NewClientset(objs...)
	return &Kube{Client: cs}, cs
}

func TestKubeList(t *testing.T) {
	ctx := t.Context()
	k, cs := fakeKube(
		configMap("firefly", "ff-registry-prod", map[string]string{"a.1": "{}"}),
		configMap("firefly", "other", nil),
		configMap("shop", "ff-registry-prod", nil),
	)
	tests := []struct {
		ns   string
		want []string
	}{
		{"firefly", []string{"firefly/ff-registry-prod", "firefly/other"}},
		{"shop", []string{"shop/ff-registry-prod"}},
		{"", []string{"firefly/ff-registry-prod", "firefly/other", "shop/ff-registry-prod"}},
		{"empty", nil},
	}
	for _, tt := range tests {
		cs.ClearActions()
		got, err := k.List(ctx, tt.ns)
		if err != nil {
			t.Fatal(err)
		}
		n := names(got.Items)
		slices.Sort(n)
		if len(n) != len(tt.want) || (len(n) > 0 && !slices.Equal(n, tt.want)) {
			t.Errorf("List(%q) = %q, want %q", tt.ns, n, tt.want)
		}
		actions := cs.Actions()
		if len(actions) != 1 {
			t.Fatalf("List(%q) made %d requests: %v", tt.ns, len(actions), actions)
		}
		list, ok := actions[0].(k8stesting.ListActionImpl)
		if !ok || list.GetResource().Resource != "configmaps" || list.GetNamespace() != tt.ns {
			t.Fatalf("List(%q) request = %#v", tt.ns, actions[0])
		}
		// Served from the API server's watch cache, not a quorum read.
		if opts := list.GetListOptions(); opts.ResourceVersion != "0" {
			t.Errorf("List(%q) ListOptions.ResourceVersion = %q, want \"0\"", tt.ns, opts.ResourceVersion)
		}
	}
	got, _ := k.List(ctx, "firefly")
	for _, cm := range got.Items {
		if cm.Name == "ff-registry-prod" && cm.Data["a.1"] != "{}" {
			t.Errorf("List lost data: %+v", cm)
		}
	}
}

func TestKubeGetCreateUpdate(t *testing.T) {
	ctx := t.Context()
	k, cs := fakeKube()
	created, err := k.Create(ctx, configMap("firefly", "ff-registry-prod", map[string]string{"a.1": "{}"}))
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Get(ctx, "firefly", "ff-registry-prod")
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["a.1"] != "{}" || got.Namespace != "firefly" {
		t.Errorf("Get = %+v", got)
	}
	got.Data["b.2"] = "{}"
	got.ResourceVersion = "42"
	updated, err := k.Update(ctx, got)
	if err != nil {
		t.Fatal(err)
	}
	if len(updated.Data) != 2 {
		t.Errorf("Update returned %+v", updated)
	}
	if again, _ := k.Get(ctx, "firefly", "ff-registry-prod"); len(again.Data) != 2 {
		t.Errorf("after Update, Get = %+v", again)
	}
	// The resourceVersion read is sent, so the API server can refuse a stale one.
	var sent *corev1.ConfigMap
	for _, a := range cs.Actions() {
		if u, ok := a.(k8stesting.UpdateAction); ok {
			sent = u.GetObject().(*corev1.ConfigMap)
			if u.GetNamespace() != "firefly" {
				t.Errorf("Update went to namespace %q", u.GetNamespace())
			}
		}
	}
	if sent == nil || sent.ResourceVersion != "42" {
		t.Errorf("Update sent %+v, want resourceVersion 42", sent)
	}
	if created.Data["a.1"] != "{}" {
		t.Errorf("Create returned %+v", created)
	}

	_, err = k.Get(ctx, "firefly", "missing")
	if !apierrors.IsNotFound(err) || !strings.HasPrefix(err.Error(), "get configmap firefly/missing: ") {
		t.Errorf("Get missing: %v", err)
	}
	_, err = k.Create(ctx, configMap("firefly", "ff-registry-prod", nil))
	if !apierrors.IsAlreadyExists(err) || !strings.HasPrefix(err.Error(), "create configmap firefly/ff-registry-prod: ") {
		t.Errorf("Create existing: %v", err)
	}
	_, err = k.Update(ctx, configMap("firefly", "missing", nil))
	if !apierrors.IsNotFound(err) || !strings.HasPrefix(err.Error(), "update configmap firefly/missing: ") {
		t.Errorf("Update missing: %v", err)
	}
}

// API server errors keep their type through the store's wrapping, so callers
// classify them with apierrors whichever store they use.
func TestKubeErrorsWrapped(t *testing.T) {
	gr := schema.GroupResource{Resource: "configmaps"}
	conflict := apierrors.NewConflict(gr, "ff-registry-prod", errors.New("the object has been modified"))
	notFound := apierrors.NewNotFound(gr, "ff-registry-prod")
	forbidden := apierrors.NewForbidden(gr, "", errors.New("RBAC says no"))
	exists := apierrors.NewAlreadyExists(gr, "ff-registry-prod")
	tooLarge := apierrors.NewRequestEntityTooLargeError("limit is 3145728")
	timeout := apierrors.NewServerTimeout(gr, "list", 1)

	cm := configMap("firefly", "ff-registry-prod", nil)
	tests := []struct {
		verb   string
		call   func(*Kube) error
		inject error
		is     func(error) bool
		prefix string
	}{
		{"update", func(k *Kube) error { _, err := k.Update(t.Context(), cm); return err }, conflict, apierrors.IsConflict, "update configmap firefly/ff-registry-prod: "},
		{"update", func(k *Kube) error { _, err := k.Update(t.Context(), cm); return err }, notFound, apierrors.IsNotFound, "update configmap firefly/ff-registry-prod: "},
		{"update", func(k *Kube) error { _, err := k.Update(t.Context(), cm); return err }, tooLarge, apierrors.IsRequestEntityTooLargeError, "update configmap firefly/ff-registry-prod: "},
		{"get", func(k *Kube) error { _, err := k.Get(t.Context(), "firefly", "ff-registry-prod"); return err }, notFound, apierrors.IsNotFound, "get configmap firefly/ff-registry-prod: "},
		{"get", func(k *Kube) error { _, err := k.Get(t.Context(), "firefly", "ff-registry-prod"); return err }, forbidden, apierrors.IsForbidden, "get configmap firefly/ff-registry-prod: "},
		{"create", func(k *Kube) error { _, err := k.Create(t.Context(), cm); return err }, exists, apierrors.IsAlreadyExists, "create configmap firefly/ff-registry-prod: "},
		{"create", func(k *Kube) error { _, err := k.Create(t.Context(), cm); return err }, conflict, apierrors.IsConflict, "create configmap firefly/ff-registry-prod: "},
		{"list", func(k *Kube) error { _, err := k.List(t.Context(), "firefly"); return err }, forbidden, apierrors.IsForbidden, "list configmaps in namespace firefly: "},
		{"list", func(k *Kube) error { _, err := k.List(t.Context(), ""); return err }, timeout, apierrors.IsServerTimeout, "list configmaps in all namespaces: "},
	}
	for _, tt := range tests {
		t.Run(tt.verb+"/"+string(apierrors.ReasonForError(tt.inject)), func(t *testing.T) {
			k, cs := fakeKube(configMap("firefly", "ff-registry-prod", nil))
			calls := 0
			cs.PrependReactor(tt.verb, "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
				calls++
				return true, nil, tt.inject
			})
			err := tt.call(k)
			if calls != 1 {
				t.Fatalf("reactor called %d times", calls)
			}
			if !tt.is(err) {
				t.Errorf("error %v lost its API status", err)
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.prefix) || !strings.HasSuffix(err.Error(), tt.inject.Error()) {
				t.Errorf("error %q, want %q + the API server's message", err, tt.prefix)
			}
			var status *apierrors.StatusError
			if !errors.As(err, &status) || status != tt.inject {
				t.Errorf("errors.As(%v) did not find the API server's error", err)
			}
		})
	}
}

// ListMeta asks the API server for the metadata alone, from the watch cache:
// its answer names every ConfigMap with its resourceVersion and no data.
func TestKubeListMeta(t *testing.T) {
	var mu sync.Mutex
	var reqs []*http.Request
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reqs = append(reqs, r.Clone(context.Background()))
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/forbidden/configmaps") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"RBAC says no"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"40"},"items":[`+
			`{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"ff-registry-prod","namespace":"firefly","resourceVersion":"31"}},`+
			`{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"other","namespace":"firefly","resourceVersion":"12"}}]}`)
	}))
	defer api.Close()
	k, err := NewKube(&rest.Config{Host: api.URL})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ ns, path string }{
		{"firefly", "/api/v1/namespaces/firefly/configmaps"},
		{"", "/api/v1/configmaps"},
	} {
		mu.Lock()
		reqs = nil
		mu.Unlock()
		list, err := k.ListMeta(t.Context(), tt.ns)
		if err != nil {
			t.Fatal(err)
		}
		if list.ResourceVersion != "40" || len(list.Items) != 2 ||
			list.Items[0].Name != "ff-registry-prod" || list.Items[0].ResourceVersion != "31" {
			t.Errorf("ListMeta(%q) = %+v", tt.ns, list)
		}
		mu.Lock()
		if len(reqs) != 1 {
			t.Fatalf("ListMeta(%q) made %d requests", tt.ns, len(reqs))
		}
		r := reqs[0]
		mu.Unlock()
		if r.Method != http.MethodGet || r.URL.Path != tt.path {
			t.Errorf("ListMeta(%q) asked %s %s, want GET %s", tt.ns, r.Method, r.URL.Path, tt.path)
		}
		// Served from the API server's watch cache, not a quorum read.
		if q := r.URL.Query(); !q.Has("resourceVersion") || q.Get("resourceVersion") != "0" {
			t.Errorf("ListMeta(%q) query %q, want resourceVersion=0", tt.ns, r.URL.RawQuery)
		}
		if accept := r.Header.Get("Accept"); !strings.Contains(accept, "as=PartialObjectMetadataList") {
			t.Errorf("ListMeta(%q) Accept %q does not ask for metadata only", tt.ns, accept)
		}
	}

	_, err = k.ListMeta(t.Context(), "forbidden")
	if !apierrors.IsForbidden(err) || !strings.HasPrefix(err.Error(), "list configmap metadata in namespace forbidden: ") {
		t.Errorf("ListMeta refused: %v, want a Forbidden naming the namespace", err)
	}

	if _, err := (&Kube{Client: k.Client}).ListMeta(t.Context(), "firefly"); err == nil {
		t.Error("ListMeta without a metadata client did not fail")
	}
}
