package store

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
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
