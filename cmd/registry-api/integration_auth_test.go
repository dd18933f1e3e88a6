//go:build integration

package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/acme/registry-api/internal/kubetest"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/testkit"
)

// tokenAudience is the audience registry-api checks tokens for; the test API
// server accepts it besides its own issuer's.
const tokenAudience = "registry-api"

// authServeConfig is serve against the API server with authentication on,
// a short TTL, and lease timings short enough for tests to watch a handover.
func authServeConfig(kubeconfig string, namespaces ...string) Config {
	cfg := kubeServeConfig(kubeconfig, 300*time.Millisecond, namespaces...)
	cfg.Auth = authKubernetes
	cfg.TTL = 2 * time.Second
	cfg.LeaderLeaseDuration = 3 * time.Second
	cfg.LeaderLeaseRenewDeadline = 2 * time.Second
	cfg.LeaderLeaseRetryPeriod = 250 * time.Millisecond
	return cfg
}

func createServiceAccount(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating ServiceAccount %s/%s: %v", ns, name, err)
	}
}

// saToken asks the API server for a token of the ServiceAccount (TokenRequest)
// for audiences, bound to pod when one is given, valid for the minimum of 10
// minutes.
func saToken(t *testing.T, cs kubernetes.Interface, ns, name string, pod *corev1.Pod, audiences ...string) string {
	t.Helper()
	expiry := int64(600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// createPod creates a pod that runs as the ServiceAccount. Without a
// scheduler or kubelet it stays Pending, but it exists, which is all a
// pod-bound token and registry-api's keepalive ask of it.
func createPod(t *testing.T, cs kubernetes.Interface, ns, name, serviceAccount string) *corev1.Pod {
	t.Helper()
	pod, err := cs.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{ServiceAccountName: serviceAccount,
			Containers: []corev1.Container{{Name: "app", Image: "registry.example.com/acme/app:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	return pod
}

// deletePodNow deletes the pod with grace period 0: with no kubelet to
// confirm a graceful stop, that removes it at once.
func deletePodNow(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	zero := int64(0)
	if err := cs.CoreV1().Pods(ns).Delete(t.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("deleting pod %s/%s: %v", ns, name, err)
	}
}

// authCall sends a request with a bearer token (none when empty).
func authCall(t *testing.T, method, url, body, token string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, out
}

// wantAnswer requires status and, for problems, code; for 403 the detail
// must name rule.
func wantAnswer(t *testing.T, what string, status int, body []byte, wantStatus int, code model.Code, rule string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s = %d, want %d: %s", what, status, wantStatus, body)
	}
	if code != "" && problemCode(body) != string(code) {
		t.Fatalf("%s: code %q, want %q: %s", what, problemCode(body), code, body)
	}
	if rule != "" && !strings.Contains(string(body), rule) {
		t.Fatalf("%s: detail does not name rule %s: %s", what, rule, body)
	}
}

// forgedToken is a well-formed ServiceAccount JWT for the right audience,
// signed by a key the API server does not trust; exp sets its expiry.
func forgedToken(t *testing.T, ns, name string, exp time.Time) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "forged"})
	claims, _ := json.Marshal(map[string]any{
		"iss": "https://kubernetes.default.svc.cluster.local", "aud": []string{tokenAudience},
		"sub": "system:serviceaccount:" + ns + ":" + name, "iat": time.Now().Unix(), "nbf": time.Now().Unix(), "exp": exp.Unix(),
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]string{"name": name, "uid": "00000000-0000-0000-0000-000000000000"}},
	})
	signing := enc(header) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc(sig)
}

// entryMembers reads the members registry-api adds to a stored entry.
func entryMembers(t *testing.T, cs kubernetes.Interface, ns, env, key string) (model.Ownership, bool) {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), model.ConfigMapName(env), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return model.Ownership{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := cm.Data[key]
	if !ok {
		return model.Ownership{}, false
	}
	o, err := model.ReadOwnership([]byte(raw))
	if err != nil {
		t.Fatalf("entry %s: %v", key, err)
	}
	return o, true
}

// TestIntegrationAuthTokens checks who gets in, with real ServiceAccount
// tokens from TokenRequest and a real TokenReview.
func TestIntegrationAuthTokens(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-auth-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)
	createServiceAccount(t, cs, ns, "app")
	createServiceAccount(t, cs, ns, "gone")

	base, _ := startServe(t, authServeConfig(srv.Kubeconfig, ns), io.Discard)
	waitReady(t, base)
	instances := base + "/v1/envs/prod/apps/stock-service/instances"
	reg := func(lease int64) string { return stockRegistration(lease) }

	// No token: 401 with the challenge, nothing written.
	status, hdr, body := authCall(t, http.MethodPost, instances, reg(1), "")
	wantAnswer(t, "register without a token", status, body, http.StatusUnauthorized, model.CodeUnauthorized, "")
	if got := hdr.Get("WWW-Authenticate"); got != `Bearer realm="registry-api"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}

	// A forged token, well-formed but signed by an unknown key.
	status, hdr, body = authCall(t, http.MethodPost, instances, reg(2), forgedToken(t, ns, "app", time.Now().Add(time.Hour)))
	wantAnswer(t, "register with a forged token", status, body, http.StatusUnauthorized, model.CodeUnauthorized, "")
	if got := hdr.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	status, _, body = authCall(t, http.MethodPost, instances, reg(3), "not-a-jwt")
	wantAnswer(t, "register with garbage", status, body, http.StatusUnauthorized, model.CodeUnauthorized, "")

	// Expired tokens: a TokenRequest cannot issue one that expires in less
	// than 10 minutes, so expiry is shown two ways the API server refuses
	// alike: a token whose exp has passed (forged, since no real one can be
	// had), and a real token whose ServiceAccount has since been deleted,
	// which the TokenReview rejects as it rejects an expired one.
	status, _, body = authCall(t, http.MethodPost, instances, reg(4), forgedToken(t, ns, "app", time.Now().Add(-time.Hour)))
	wantAnswer(t, "register with an expired token", status, body, http.StatusUnauthorized, model.CodeUnauthorized, "")
	gone := saToken(t, cs, ns, "gone", nil, tokenAudience)
	if err := cs.CoreV1().ServiceAccounts(ns).Delete(t.Context(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	status, _, body = authCall(t, http.MethodPost, instances, reg(5), gone)
	wantAnswer(t, "register with the token of a deleted ServiceAccount", status, body, http.StatusUnauthorized, model.CodeUnauthorized, "")

	// A real token for the wrong audience: the API server's own, the
	// default of a pod's token.
	status, _, body = authCall(t, http.MethodPost, instances, reg(6), saToken(t, cs, ns, "app", nil, "https://kubernetes.default.svc.cluster.local"))
	wantAnswer(t, "register with a token for another audience", status, body, http.StatusUnauthorized, model.CodeUnauthorized, "")

	// None of that reached the store.
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("refused registrations wrote the ConfigMap: %v", err)
	}

	// The right token: registered, and the entry says by whom.
	token := saToken(t, cs, ns, "app", nil, tokenAudience)
	status, _, body = authCall(t, http.MethodPost, instances, reg(7), token)
	wantAnswer(t, "register with a valid token", status, body, http.StatusCreated, "", "")
	if !strings.Contains(string(body), `"keepalive":"client"`) {
		t.Errorf("registration answer: %s", body)
	}
	own, ok := entryMembers(t, cs, ns, "prod", "stock-service.7")
	if !ok || own.RegisteredBy == nil || own.RegisteredBy.Username != "system:serviceaccount:"+ns+":app" ||
		own.RegisteredBy.Namespace != ns || own.RegisteredBy.UID == "" || own.RegisteredBy.Pod != nil || own.Keepalive != model.KeepaliveClient {
		t.Fatalf("the entry records %+v (found %v)", own, ok)
	}
	// Heartbeats reuse the review: one per token, not one per request.
	for range 5 {
		status, _, body = authCall(t, http.MethodPut, instances+"/7/heartbeat", "", token)
		wantAnswer(t, "heartbeat", status, body, http.StatusOK, "", "")
	}
	if v := mustMetric(t, base, "registry_api_auth_requests_total", `result="authenticated"`); v != 1 {
		t.Errorf("%v TokenReviews accepted, want 1: the rest from the cache", v)
	}
	if v := mustMetric(t, base, "registry_api_auth_requests_total", `result="cached"`); v != 5 {
		t.Errorf("%v cached acceptances, want 5", v)
	}
	// Reads stay open by default.
	if status, _, body := authCall(t, http.MethodGet, base+"/v1/envs/prod", "", ""); status != http.StatusOK {
		t.Errorf("read without a token = %d: %s", status, body)
	}

	// With REGISTRY_READ_AUTH reads need a token too; probes do not.
	cfg := authServeConfig(srv.Kubeconfig, ns)
	cfg.ReadAuth = true
	readBase, _ := startServe(t, cfg, io.Discard)
	waitReady(t, readBase)
	status, _, body = authCall(t, http.MethodGet, readBase+"/v1/envs/prod", "", "")
	wantAnswer(t, "read without a token", status, body, http.StatusUnauthorized, model.CodeUnauthorized, "")
	status, _, body = authCall(t, http.MethodGet, readBase+"/v1/envs/prod", "", token)
	wantAnswer(t, "read with a token", status, body, http.StatusOK, "", "")
}

// TestIntegrationAuthPolicy checks the write policy with real tokens of
// several ServiceAccounts.
func TestIntegrationAuthPolicy(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	suffix := uniqueSuffix(t)
	nsA, nsB, nsOps := "itest-pol-"+suffix+"-a", "itest-pol-"+suffix+"-b", "itest-pol-"+suffix+"-ops"
	for _, ns := range []string{nsA, nsB, nsOps} {
		createNamespace(t, cs, ns)
	}
	createServiceAccount(t, cs, nsA, "alice")
	createServiceAccount(t, cs, nsA, "bob")
	createServiceAccount(t, cs, nsB, "mallory")
	createServiceAccount(t, cs, nsOps, "registrar")
	alice := saToken(t, cs, nsA, "alice", nil, tokenAudience)
	bob := saToken(t, cs, nsA, "bob", nil, tokenAudience)
	mallory := saToken(t, cs, nsB, "mallory", nil, tokenAudience)
	registrar := saToken(t, cs, nsOps, "registrar", nil, tokenAudience)

	// An entry the Go library wrote directly.
	lib := newNode("prod", "user-service", "v1", "/acme.user.v1.UserService/Login")
	putRegistry(t, cs, nsA, "ff-registry-prod", entries(lib))

	cfg := authServeConfig(srv.Kubeconfig, nsA, nsB)
	cfg.AdminSubjects = []string{"system:serviceaccount:" + nsOps + ":registrar"}
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)
	instances := base + "/v1/envs/prod/apps/stock-service/instances"

	status, _, body := authCall(t, http.MethodPost, instances+"?namespace="+nsA, stockRegistration(11), alice)
	wantAnswer(t, "alice registers in her namespace", status, body, http.StatusCreated, "", "")

	// Cross-namespace writes: a token of another ServiceAccount cannot use
	// registry-api to write into a namespace it does not own.
	status, _, body = authCall(t, http.MethodPost, instances+"?namespace="+nsA, stockRegistration(12), mallory)
	wantAnswer(t, "mallory registers in alice's namespace", status, body, http.StatusForbidden, model.CodeForbidden, "own-namespace-only")
	status, _, body = authCall(t, http.MethodPut, instances+"/11/heartbeat?namespace="+nsA, "", mallory)
	wantAnswer(t, "mallory heartbeats alice's entry", status, body, http.StatusForbidden, model.CodeForbidden, "own-namespace-only")
	status, _, body = authCall(t, http.MethodDelete, instances+"/11?namespace="+nsA, "", mallory)
	wantAnswer(t, "mallory deregisters alice's entry", status, body, http.StatusForbidden, model.CodeForbidden, "own-namespace-only")
	// Without ?namespace=, mallory's writes go to her own namespace.
	status, _, body = authCall(t, http.MethodPost, instances, stockRegistration(13), mallory)
	wantAnswer(t, "mallory registers in her namespace", status, body, http.StatusCreated, "", "")
	if _, ok := entryMembers(t, cs, nsB, "prod", "stock-service.13"); !ok {
		t.Error("mallory's registration is not in her namespace")
	}

	// Same namespace, other identity: only the registering one may touch it.
	status, _, body = authCall(t, http.MethodPut, instances+"/11/heartbeat?namespace="+nsA, "", bob)
	wantAnswer(t, "bob heartbeats alice's entry", status, body, http.StatusForbidden, model.CodeForbidden, "registering-identity-only")
	status, _, body = authCall(t, http.MethodDelete, instances+"/11?namespace="+nsA, "", bob)
	wantAnswer(t, "bob deregisters alice's entry", status, body, http.StatusForbidden, model.CodeForbidden, "registering-identity-only")
	status, _, body = authCall(t, http.MethodPost, instances+"?namespace="+nsA, stockRegistration(11), bob)
	wantAnswer(t, "bob registers over alice's entry", status, body, http.StatusForbidden, model.CodeForbidden, "registering-identity-only")
	status, _, body = authCall(t, http.MethodPut, instances+"/11/heartbeat?namespace="+nsA, "", alice)
	wantAnswer(t, "alice heartbeats her entry", status, body, http.StatusOK, "", "")

	// The library's entry is read-only, but for an admin subject.
	libPath := base + "/v1/envs/prod/apps/user-service/instances/" + strconv.FormatInt(lib.lease, 10)
	status, _, body = authCall(t, http.MethodPut, libPath+"/heartbeat?namespace="+nsA, "", alice)
	wantAnswer(t, "alice heartbeats a library entry", status, body, http.StatusForbidden, model.CodeForbidden, "library-entries-read-only")
	status, _, body = authCall(t, http.MethodDelete, libPath+"?namespace="+nsA, "", alice)
	wantAnswer(t, "alice deregisters a library entry", status, body, http.StatusForbidden, model.CodeForbidden, "library-entries-read-only")
	status, _, body = authCall(t, http.MethodPut, libPath+"/heartbeat?namespace="+nsA, "", registrar)
	wantAnswer(t, "the admin heartbeats a library entry", status, body, http.StatusOK, "", "")
	status, _, body = authCall(t, http.MethodDelete, instances+"/11?namespace="+nsA, "", registrar)
	wantAnswer(t, "the admin deregisters alice's entry", status, body, http.StatusNoContent, "", "")
	status, _, body = authCall(t, http.MethodDelete, libPath+"?namespace="+nsA, "", registrar)
	wantAnswer(t, "the admin deregisters a library entry", status, body, http.StatusNoContent, "", "")

	cm, err := cs.CoreV1().ConfigMaps(nsA).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cm.Data) != 0 {
		t.Errorf("entries left in %s: %v", nsA, cm.Data)
	}
}

// TestIntegrationPodBoundKeepalive registers with a token bound to a pod and
// never heartbeats: the leader keeps the entry alive past the TTL while the
// pod exists, and removes it once the pod is deleted. An entry that opted
// out with "keepalive": "client" is left to its client.
func TestIntegrationPodBoundKeepalive(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-pod-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)
	createServiceAccount(t, cs, ns, "stock")
	pod := createPod(t, cs, ns, "stock-0", "stock")
	token := saToken(t, cs, ns, "stock", pod, tokenAudience)

	cfg := authServeConfig(srv.Kubeconfig, ns)
	base, _ := startServe(t, cfg, io.Discard)
	waitReady(t, base)
	testkit.WaitFor(t, 10*time.Second, "a leader", func() (bool, string) {
		v, _ := metricValue(t, base, "registry_api_leader")
		return v == 1, fmt.Sprint(v)
	})
	instances := base + "/v1/envs/prod/apps/stock-service/instances"
	status, _, body := authCall(t, http.MethodPost, instances, stockRegistration(21), token)
	wantAnswer(t, "pod-bound registration", status, body, http.StatusCreated, "", "")
	if !strings.Contains(string(body), `"keepalive":"pod"`) {
		t.Errorf("registration answer: %s", body)
	}
	optOut := strings.TrimSuffix(stockRegistration(22), "}") + `,"keepalive":"client"}`
	status, _, body = authCall(t, http.MethodPost, instances, optOut, token)
	wantAnswer(t, "pod-bound registration opting out", status, body, http.StatusCreated, "", "")

	own, ok := entryMembers(t, cs, ns, "prod", "stock-service.21")
	if !ok || own.RegisteredBy == nil || own.RegisteredBy.Pod == nil ||
		*own.RegisteredBy.Pod != (model.PodRef{Name: pod.Name, UID: string(pod.UID)}) || own.Keepalive != model.KeepalivePod {
		t.Fatalf("the entry records %+v", own)
	}

	// Alive, with no heartbeat from anyone, for several TTLs.
	instance := func(lease int) (alive, found bool) {
		status, _, body := authCall(t, http.MethodGet, instances+"/"+strconv.Itoa(lease), "", "")
		if status == http.StatusNotFound {
			return false, false
		}
		if status != http.StatusOK {
			t.Fatalf("GET instance %d = %d: %s", lease, status, body)
		}
		var v struct {
			Alive bool `json:"alive"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatal(err)
		}
		return v.Alive, true
	}
	for end := time.Now().Add(4 * cfg.TTL); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if alive, found := instance(21); !alive || !found {
			t.Fatalf("the pod-bound entry is not alive (found %v) while its pod exists", found)
		}
	}
	if alive, _ := instance(22); alive {
		t.Error("the entry that opted out of keepalive is still alive without heartbeats")
	}
	if v := mustMetric(t, base, "registry_api_keepalive_refreshed_total"); v < 4 {
		t.Errorf("registry_api_keepalive_refreshed_total = %v", v)
	}

	deletePodNow(t, cs, ns, pod.Name)
	took := testkit.WaitFor(t, 4*cfg.TTL, "the entry removed after its pod", func() (bool, string) {
		_, found := entryMembers(t, cs, ns, "prod", "stock-service.21")
		return !found, "still stored"
	})
	t.Logf("entry removed %s after its pod was deleted", took.Round(time.Millisecond))
	if _, found := entryMembers(t, cs, ns, "prod", "stock-service.22"); !found {
		t.Error("the client-kept entry was removed with the pod; it is its client's (or GC's) to remove")
	}
	if v := mustMetric(t, base, "registry_api_keepalive_removed_total"); v != 1 {
		t.Errorf("registry_api_keepalive_removed_total = %v, want 1", v)
	}
}

// TestIntegrationGC seeds entries the Go library wrote: the leader removes
// the long-dead one and nothing alive, nor anything stale but younger than
// REGISTRY_GC_AFTER.
func TestIntegrationGC(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-gc-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)

	now := time.Now()
	dead := newNode("prod", "legacy-service", "v1", "/acme.legacy.v1.Legacy/Do")
	dead.runDate = now.Add(-3 * time.Hour)
	stale := newNode("prod", "stale-service", "v1", "/acme.stale.v1.Stale/Do")
	stale.runDate = now.Add(-10 * time.Second)
	alive := newNode("prod", "pay-service", "v1", "/acme.pay.v1.PayService/Charge")
	putRegistry(t, cs, ns, "ff-registry-prod", entries(dead, stale, alive))
	// Keep alive heartbeating as the library would, every TTL/2.
	cfg := authServeConfig(srv.Kubeconfig, ns)
	cfg.GCAfter = time.Minute
	stop := make(chan struct{})
	defer close(stop)
	go func(n node) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(cfg.TTL / 2):
			}
			n.runDate = time.Now()
			v := n.value()
			cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
			if err != nil {
				continue
			}
			cm.Data[n.key()] = v
			_, _ = cs.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{})
		}
	}(alive)

	logs := &testkit.Buffer{}
	base, _ := startServe(t, cfg, logs)
	waitReady(t, base)
	testkit.WaitFor(t, 10*time.Second, "the dead entry collected", func() (bool, string) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		_, there := cm.Data[dead.key()]
		return !there, fmt.Sprintf("%d entries", len(cm.Data))
	})
	// A few more cycles: nothing else goes.
	time.Sleep(2 * cfg.TTL)
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []node{stale, alive} {
		if _, ok := cm.Data[n.key()]; !ok {
			t.Errorf("GC removed %s, which is younger than REGISTRY_GC_AFTER", n.app)
		}
	}
	if v := mustMetric(t, base, "registry_api_gc_removed_total"); v != 1 {
		t.Errorf("registry_api_gc_removed_total = %v, want 1", v)
	}
	removals := 0
	for _, l := range logLines(t, logs) {
		if msg, _ := l["message"].(string); strings.HasPrefix(msg, "removed registry entry") {
			removals++
			if l["key"] != dead.key() || l["app"] != "legacy-service" || l["namespace"] != ns || l["env"] != "prod" || l["reason"] != "stale" || l["age"] == nil {
				t.Errorf("removal logged as %v", l)
			}
		}
	}
	if removals != 1 {
		t.Errorf("%d removals logged, want 1", removals)
	}
}

// cutProxy forwards TCP connections to the API server until cut, then drops
// them all and refuses new ones: a replica behind it is cut off as a crashed
// or partitioned pod is, unable even to release its lease.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
	t.Cleanup(p.cutOff)
	return p
}

func (p *cutProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

func (p *cutProxy) cutOff() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// proxiedKubeconfig writes the admin kubeconfig with its server behind p.
// The serving certificate holds 127.0.0.1, so TLS still verifies.
func proxiedKubeconfig(t *testing.T, srv *kubetest.Server, p *cutProxy) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(srv.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + p.ln.Addr().String()
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIntegrationLeaderHandover runs replicas with leader election. When the
// leader is cut off from the API server, so that it cannot even release its
// lease, it stops its work by the renew deadline and another replica takes
// over within the lease duration; when a leader stops, releasing the lease,
// another takes over at once. Throughout, a pod-bound entry stays alive.
func TestIntegrationLeaderHandover(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-lead-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)
	createServiceAccount(t, cs, ns, "stock")
	pod := createPod(t, cs, ns, "stock-0", "stock")

	cfg := authServeConfig(srv.Kubeconfig, ns)
	leading := func(base string) bool {
		v, _ := metricValue(t, base, "registry_api_leader")
		return v == 1
	}
	holder := func() string {
		lease, err := cs.CoordinationV1().Leases(ns).Get(t.Context(), "registry-api", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the leader Lease in the service's namespace: %v", err)
		}
		if lease.Spec.HolderIdentity == nil {
			return ""
		}
		return *lease.Spec.HolderIdentity
	}

	// A reaches the API server through a proxy that the test can cut; it
	// starts alone, so it leads.
	proxy := startCutProxy(t, strings.TrimPrefix(kubeconfigServer(t, srv.Kubeconfig), "https://"))
	cfgA := cfg
	cfgA.Kubeconfig = proxiedKubeconfig(t, srv, proxy)
	baseA, _ := startServe(t, cfgA, io.Discard)
	waitReady(t, baseA)
	testkit.WaitFor(t, 10*time.Second, "A leading", func() (bool, string) { return leading(baseA), "not leading" })
	holderA := holder()
	baseB, stopB := startServe(t, cfg, io.Discard)
	waitReady(t, baseB)

	status, _, body := authCall(t, http.MethodPost, baseB+"/v1/envs/prod/apps/stock-service/instances", stockRegistration(31),
		saToken(t, cs, ns, "stock", pod, tokenAudience))
	wantAnswer(t, "pod-bound registration through B", status, body, http.StatusCreated, "", "")
	runDate := func() time.Time {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node, _, err := model.ParseEntry(ns, "prod", "stock-service.31", []byte(cm.Data["stock-service.31"]), model.ParseOptions{})
		if err != nil {
			t.Fatalf("entry: %v", err)
		}
		return node.RunDate
	}
	refreshed := func(who string) {
		t.Helper()
		before := runDate()
		testkit.WaitFor(t, 2*cfg.TTL, who+" refreshing the entry", func() (bool, string) {
			return runDate().After(before), "not refreshed since " + before.Format(time.TimeOnly)
		})
	}
	refreshed("A")
	if leading(baseB) {
		t.Fatal("B leads while A holds the lease")
	}

	// A is cut off: it stops leading by the renew deadline; B leads within
	// the lease duration of A's last renewal (plus B's polling, jittered).
	cut := time.Now()
	proxy.cutOff()
	testkit.WaitFor(t, cfg.LeaderLeaseRenewDeadline+time.Second, "A stopping its work", func() (bool, string) { return !leading(baseA), "A still leads" })
	aStopped := time.Since(cut)
	testkit.WaitFor(t, cfg.LeaderLeaseDuration+time.Second, "B leading", func() (bool, string) { return leading(baseB), "B does not lead" })
	bLeads := time.Since(cut)
	t.Logf("A cut off: A stopped leading after %s, B leads after %s", aStopped.Round(time.Millisecond), bLeads.Round(time.Millisecond))
	if bLeads < aStopped {
		t.Errorf("B led (%s) before A stopped (%s)", bLeads, aStopped)
	}
	if h := holder(); h == holderA || h == "" {
		t.Errorf("lease holder %q after A was cut off", h)
	}
	refreshed("B")

	// C joins; B stops, releasing the lease: C takes over at once.
	baseC, _ := startServe(t, cfg, io.Discard)
	waitReady(t, baseC)
	stopped := time.Now()
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	took := testkit.WaitFor(t, cfg.LeaderLeaseDuration, "C leading", func() (bool, string) { return leading(baseC), "C does not lead" })
	t.Logf("B stopped: C leads %s later (%s after B was told to stop)", took.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	refreshed("C")
	status, _, body = authCall(t, http.MethodGet, baseC+"/v1/envs/prod/apps/stock-service/instances/31", "", "")
	if status != http.StatusOK || !strings.Contains(string(body), `"alive":true`) {
		t.Errorf("the pod-bound instance after the handovers: %d %s", status, body)
	}
}
