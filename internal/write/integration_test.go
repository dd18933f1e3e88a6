//go:build integration

// These tests need bin/kube-test-apiserver (`make kube-apiserver`); they fail,
// never skip, without it:
//
//	go test -race -count=1 -tags integration -run Integration ./internal/write/
package write

import (
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/acme/registry-api/internal/kubetest"
	"github.com/acme/registry-api/internal/store"
)

// TestIntegrationContention runs the contention scenario against a real API
// server: its resourceVersions, its 409s and its key and size validation are
// what the memory store imitates.
func TestIntegrationContention(t *testing.T) {
	dir, err := os.MkdirTemp("", "registry-itest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv, err := kubetest.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping the kube-apiserver: %v", err)
		}
	})
	cfg, err := srv.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	// No client-side throttling: the scenario is about the API server's
	// optimistic concurrency, and its clients all share this one client.
	cfg.QPS = -1
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "firefly"
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kube := &store.Kube{Client: cs}
	for _, window := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("window=%s", window), func(t *testing.T) {
			runContentionScenario(t, kube, ns, window, time.Now)
		})
	}
}
