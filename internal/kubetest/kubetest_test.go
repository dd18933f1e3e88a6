//go:build integration

// This test needs bin/kube-test-apiserver and bin/kubectl (`make
// kube-apiserver`); it fails, never skips, without them. It carries the
// integration tag so that the API-server-free unit test run stays so:
//
//	go test -tags integration -run Integration ./internal/kubetest/
package kubetest_test

import (
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/acme/registry-api/internal/kubetest"
)

const audience = "registry-api"

func TestIntegrationServer(t *testing.T) {
	dir := t.TempDir()
	begin := time.Now()
	s, err := kubetest.Start(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	t.Logf("ready after %v", time.Since(begin).Round(time.Millisecond))

	cs := clientset(t, s)
	ctx := t.Context()
	const ns, name = "kubetest", "services"

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       map[string]string{"svc-a": "v1"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating configmap: %v", err)
	}

	t.Run("key with slash is invalid", func(t *testing.T) {
		bad := cm.DeepCopy()
		bad.Data["a/b"] = "x"
		_, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, bad, metav1.UpdateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Fatalf("update with key %q: got %v, want Invalid", "a/b", err)
		}
	})

	t.Run("more than 1 MiB is rejected", func(t *testing.T) {
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "too-big"},
			Data:       map[string]string{"blob": strings.Repeat("x", 1<<20+1)},
		}, metav1.CreateOptions{})
		if err == nil {
			t.Fatal("creating a configmap with more than 1 MiB of data succeeded")
		}
		if !apierrors.IsInvalid(err) {
			t.Fatalf("got %v, want Invalid", err)
		}
	})

	t.Run("stale resourceVersion conflicts", func(t *testing.T) {
		fresh := cm.DeepCopy()
		fresh.Data["svc-a"] = "v2"
		if _, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, fresh, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update: %v", err)
		}
		stale := cm.DeepCopy() // still carries the original resourceVersion
		stale.Data["svc-a"] = "v3"
		_, err := cs.CoreV1().ConfigMaps(ns).Update(ctx, stale, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			t.Fatalf("update with stale resourceVersion: got %v, want Conflict", err)
		}
	})

	t.Run("TokenReview with audience registry-api", func(t *testing.T) {
		sa, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "client"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		review, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token, Audiences: []string{audience}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:"+ns+":client" {
			t.Fatalf("token review status: %+v", review.Status)
		}
	})

	t.Run("kubectl version", func(t *testing.T) {
		out, err := s.Kubectl("version")
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(string(out), "Server Version: v") {
			t.Fatalf("kubectl version output lacks the server version:\n%s", out)
		}
		t.Logf("kubectl version:\n%s", out)
	})

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	begin = time.Now()
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("ready after restart in %v", time.Since(begin).Round(time.Millisecond))

	got, err := clientset(t, s).CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("configmap after restart: %v", err)
	}
	if got.Data["svc-a"] != "v2" {
		t.Fatalf("configmap data after restart: %v, want svc-a=v2", got.Data)
	}
	out, err := s.Kubectl("get", "configmap", "-n", ns, name, "-o", "jsonpath={.data.svc-a}")
	if err != nil || string(out) != "v2" {
		t.Fatalf("kubectl get after restart: %q, %v", out, err)
	}
}

func clientset(t *testing.T, s *kubetest.Server) kubernetes.Interface {
	t.Helper()
	cs, err := s.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
