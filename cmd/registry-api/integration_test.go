//go:build integration

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"

	"github.com/acme/registry-api/internal/kubetest"
	"github.com/acme/registry-api/internal/model"
	"github.com/acme/registry-api/internal/store"
	"github.com/acme/registry-api/internal/testkit"
	"github.com/acme/registry-api/internal/watch"
	"github.com/acme/registry-api/internal/write"
)

// TestIntegrationReadPath runs serve against a real API server: what it
// serves from watched namespaces, what it leaves out, how it LISTs, that it
// parses only what changed, and how soon a direct write is served.
func TestIntegrationReadPath(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	suffix := uniqueSuffix(t)
	nsA, nsB, nsC := "itest-read-"+suffix+"-a", "itest-read-"+suffix+"-b", "itest-read-"+suffix+"-c"
	for _, ns := range []string{nsA, nsB, nsC} {
		createNamespace(t, cs, ns)
	}

	const (
		login   = "/acme.user.v1.UserService/Login"
		profile = "/acme.user.v1.UserService/GetProfile"
		update  = "/acme.user.v1.UserService/UpdateProfile"
		create  = "/acme.order.v1.OrderService/Create"
		charge  = "/acme.pay.v1.PayService/Charge"
		ghost   = "/acme.ghost.v1.GhostService/Haunt"
	)
	userA := newNode("prod", "user-service", "v1", login, profile)
	orderA := newNode("prod", "order-service", "v1", create)
	userB := newNode("prod", "user-service", "v2", login, profile, update)
	payB := newNode("prod", "pay-service", "v1", charge)
	ghostC := newNode("prod", "ghost-service", "v1", ghost)
	userC := newNode("prod", "user-service", "v9", login, update)
	if int64(float64(userB.lease)) == userB.lease {
		t.Fatalf("lease id %d fits a float64: it would not show a lossy reader", userB.lease)
	}

	const brokenKey = "broken-service.1795695862709570046"
	dataA := entries(userA, orderA)
	dataA[brokenKey] = `{"proto_count":1,"lease_id":1795695862709570046,"run_date":"2026-11-26 12:2` // cut short by a hand edit
	createConfigMap(t, cs, nsA, "ff-registry-prod", dataA)
	createConfigMap(t, cs, nsB, "ff-registry-prod", entries(userB, payB))
	createConfigMap(t, cs, nsC, "ff-registry-prod", entries(ghostC, userC))
	// Unrelated ConfigMaps share the namespaces: the poller must ignore
	// them, however large.
	createConfigMap(t, cs, nsA, "app-settings", map[string]string{"log.level": "debug"})
	createConfigMap(t, cs, nsB, "static-assets", map[string]string{"bundle.js": strings.Repeat("x", 500<<10)})

	const interval = 500 * time.Millisecond
	logs := &testkit.Buffer{}
	base, _ := startServe(t, kubeServeConfig(srv.Kubeconfig, interval, nsA, nsB), logs)
	waitReady(t, base)

	t.Run("envs", func(t *testing.T) {
		var got struct{ Envs []envSummaryBody }
		hdr, _ := getJSON(t, base, "/v1/envs", &got)
		if len(got.Envs) != 1 {
			t.Fatalf("envs = %+v, want prod only", got.Envs)
		}
		prod := got.Envs[0]
		want := envSummaryBody{
			Env: "prod", Namespaces: []string{nsA, nsB}, Apps: 3, Methods: 5,
			Instances: countsBody{Alive: 4}, InvalidEntries: 1,
		}
		if !slices.Equal(prod.Namespaces, want.Namespaces) || prod.Env != want.Env || prod.Apps != want.Apps ||
			prod.Methods != want.Methods || prod.Instances != want.Instances || prod.InvalidEntries != want.InvalidEntries {
			t.Errorf("prod = %+v, want %+v", prod, want)
		}
		if hdr.Get("X-Registry-Synced-At") == "" {
			t.Error("no X-Registry-Synced-At on a synced registry")
		}
	})

	t.Run("apps", func(t *testing.T) {
		var got struct{ Apps []appSummaryBody }
		getJSON(t, base, "/v1/envs/prod/apps", &got)
		want := []appSummaryBody{
			{AppID: "order-service", Versions: []string{"v1"}, Instances: countsBody{Alive: 1}, Methods: 1},
			{AppID: "pay-service", Versions: []string{"v1"}, Instances: countsBody{Alive: 1}, Methods: 1},
			{AppID: "user-service", Versions: []string{"v1", "v2"}, Instances: countsBody{Alive: 2}, Methods: 3},
		}
		if len(got.Apps) != len(want) {
			t.Fatalf("apps = %+v, want %+v", got.Apps, want)
		}
		for i := range want {
			g, w := got.Apps[i], want[i]
			if g.AppID != w.AppID || !slices.Equal(g.Versions, w.Versions) || g.Instances != w.Instances || g.Methods != w.Methods {
				t.Errorf("apps[%d] = %+v, want %+v", i, g, w)
			}
		}
	})

	t.Run("resolution keeps lease ids exact", func(t *testing.T) {
		var got resolutionBody
		_, body := getJSON(t, base, resolvePath("prod", update), &got)
		if got.Method != update || got.AppID != "user-service" || len(got.Instances) != 1 {
			t.Fatalf("resolution of %s = %s", update, body)
		}
		in := got.Instances[0]
		if in.LeaseID != userB.lease || in.Key != userB.key() || in.Namespace != nsB || in.Version != "v2" ||
			in.Network.Internal != "user-service:8080" {
			t.Errorf("instance = %+v, want lease %d from %s", in, userB.lease, nsB)
		}
		if want := `"lease_id":"` + strconv.FormatInt(userB.lease, 10) + `"`; !bytes.Contains(body, []byte(want)) {
			t.Errorf("body lacks %s verbatim: %s", want, body)
		}

		getJSON(t, base, resolvePath("prod", login), &got)
		var leases []int64
		for _, in := range got.Instances {
			leases = append(leases, in.LeaseID)
		}
		slices.Sort(leases)
		want := []int64{userA.lease, userB.lease}
		slices.Sort(want)
		if got.AppID != "user-service" || !slices.Equal(leases, want) {
			t.Errorf("resolution of %s: app %s, leases %v; want user-service, %v", login, got.AppID, leases, want)
		}
	})

	t.Run("invalid entry reported", func(t *testing.T) {
		var got envDetailBody
		getJSON(t, base, "/v1/envs/prod", &got)
		want := issueBody{Namespace: nsA, Key: brokenKey, Reason: model.ReasonInvalidJSON}
		if len(got.InvalidEntries) != 1 || got.InvalidEntries[0] != want {
			t.Errorf("invalid entries = %+v, want [%+v]", got.InvalidEntries, want)
		}
	})

	t.Run("unwatched namespace absent", func(t *testing.T) {
		for _, path := range []string{resolvePath("prod", ghost), "/v1/envs/prod/apps/ghost-service"} {
			if status, _, body := fetch(t, base, path); status != http.StatusNotFound {
				t.Errorf("GET %s = %d, want 404: %s", path, status, body)
			}
		}
		var app struct {
			Instances []struct {
				LeaseID   int64  `json:"lease_id,string"`
				Namespace string `json:"namespace"`
			} `json:"instances"`
		}
		getJSON(t, base, "/v1/envs/prod/apps/user-service", &app)
		for _, in := range app.Instances {
			if in.Namespace == nsC || in.LeaseID == userC.lease {
				t.Errorf("user-service lists %+v from the unwatched namespace", in)
			}
		}
	})

	t.Run("polls list metadata from the watch cache and read only what moved", func(t *testing.T) {
		restCfg, err := srv.RESTConfig()
		if err != nil {
			t.Fatal(err)
		}
		rec := &requestRecorder{}
		restCfg.Wrap(rec.wrap)
		kube, err := store.NewKube(restCfg)
		if err != nil {
			t.Fatal(err)
		}
		// nsC, which serve does not watch, takes this test's writes: serve's
		// own parse counts are checked next.
		p, err := watch.New(kube, watch.Options{Namespaces: []string{nsA, nsC}, Interval: interval, TTL: itestTTL, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		poll := func() []string {
			rec.reset()
			p.Poll(t.Context())
			return describeRequests(rec.requests())
		}
		metaA, metaC := "LIST metadata /api/v1/namespaces/"+nsA+"/configmaps?resourceVersion=0",
			"LIST metadata /api/v1/namespaces/"+nsC+"/configmaps?resourceVersion=0"
		// A GET of one object asks etcd (no resourceVersion): it is at least
		// as new as the metadata listed.
		getC := func(name string) string { return "GET /api/v1/namespaces/" + nsC + "/configmaps/" + name }
		check := func(what string, got, want []string) {
			t.Helper()
			if !slices.Equal(got, want) {
				t.Errorf("%s: requests\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		}
		// Each namespace holds one registry ConfigMap, new to the poller:
		// one GET each. app-settings in nsA is never read.
		check("first poll", poll(), []string{metaA, "GET /api/v1/namespaces/" + nsA + "/configmaps/ff-registry-prod", metaC, getC("ff-registry-prod")})
		for i := range 3 {
			check("poll at rest "+strconv.Itoa(i+1), poll(), []string{metaA, metaC})
		}

		// The watch cache serves the lists, and may be a moment behind a
		// write: poll until one sees it.
		afterWrite := func(what string, want []string) {
			t.Helper()
			var got []string
			testkit.WaitFor(t, 5*time.Second, what, func() (bool, string) {
				got = poll()
				return len(got) > 2, strings.Join(got, ", ")
			})
			check(what, got, want)
		}
		another := newNode("prod", "user-service", "v9", login)
		editConfigMap(t, cs, nsC, "ff-registry-prod", func(d map[string]string) { d[another.key()] = another.value() })
		afterWrite("a registration", []string{metaA, metaC, getC("ff-registry-prod")})
		if got := p.Snapshot().Envs["prod"].Apps["user-service"]; got == nil || !slices.ContainsFunc(got.Nodes, func(n *model.Node) bool {
			return n.LeaseID == another.lease
		}) {
			t.Errorf("instance %d is not in the snapshot: %+v", another.lease, got)
		}
		check("poll at rest after it", poll(), []string{metaA, metaC})

		dev := newNode("dev", "user-service", "v1", login)
		createConfigMap(t, cs, nsC, "ff-registry-dev", entries(dev))
		afterWrite("a new env", []string{metaA, metaC, getC("ff-registry-dev")})
		if p.Snapshot().Envs["dev"] == nil {
			t.Error("the new env dev is not served")
		}
		if err := cs.CoreV1().ConfigMaps(nsC).Delete(t.Context(), "ff-registry-dev", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, 5*time.Second, "the deleted env gone", func() (bool, string) {
			got := poll()
			check("polls after a delete", got, []string{metaA, metaC})
			return p.Snapshot().Envs["dev"] == nil, "dev still served"
		})

		// All namespaces: one cluster-wide metadata LIST; what follows
		// depends on the other tests sharing the API server, but is only
		// ever GETs of registry ConfigMaps or one cluster-wide LIST.
		all, err := watch.New(kube, watch.Options{Namespaces: []string{""}, Interval: interval, TTL: itestTTL, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			rec.reset()
			all.Poll(t.Context())
			got := describeRequests(rec.requests())
			if len(got) == 0 || got[0] != "LIST metadata /api/v1/configmaps?resourceVersion=0" {
				t.Fatalf("all namespaces, poll %d: %q, want a cluster-wide metadata LIST first", i+1, got)
			}
			for _, r := range got[1:] {
				if r != "LIST /api/v1/configmaps?resourceVersion=0" &&
					!(strings.HasPrefix(r, "GET /api/v1/namespaces/") && strings.Contains(r, "/configmaps/ff-registry-")) {
					t.Errorf("all namespaces, poll %d: %s", i+1, r)
				}
			}
		}
		if prod := all.Snapshot().Envs["prod"]; prod == nil || !slices.Contains(prod.Namespaces, nsC) {
			t.Errorf("all namespaces: prod = %+v, want it in %s too", prod, nsC)
		}
	})

	t.Run("unchanged configmaps are not parsed again", func(t *testing.T) {
		parsed := mustMetric(t, base, "registry_api_entries_parsed_total")
		// Every entry of the watched registry ConfigMaps, once: 3 in A (one
		// invalid), 2 in B; none of C, none of the unrelated ConfigMaps.
		if parsed != 5 {
			t.Errorf("entries parsed after the first sync = %v, want 5", parsed)
		}
		waitPolls(t, base, 4, interval)
		if now := mustMetric(t, base, "registry_api_entries_parsed_total"); now != parsed {
			t.Fatalf("entries parsed went from %v to %v over polls that changed nothing", parsed, now)
		}

		// A heartbeat: one entry of A rewritten, as the library does every TTL/2.
		beat := userA
		beat.runDate = time.Now().Add(time.Second)
		editConfigMap(t, cs, nsA, "ff-registry-prod", func(d map[string]string) { d[beat.key()] = beat.value() })
		testkit.WaitFor(t, interval+2*time.Second, "the heartbeat is parsed", func() (bool, string) {
			v := mustMetric(t, base, "registry_api_entries_parsed_total")
			return v > parsed, strconv.FormatFloat(v, 'f', -1, 64)
		})
		waitPolls(t, base, 2, interval)
		if now := mustMetric(t, base, "registry_api_entries_parsed_total"); now != parsed+1 {
			t.Errorf("entries parsed after one entry changed = %v, want %v", now, parsed+1)
		}
	})

	t.Run("direct write served within a poll interval", func(t *testing.T) {
		const query = "/acme.search.v1.SearchService/Query"
		search := newNode("prod", "search-service", "v1", query)
		if status, _, _ := fetch(t, base, resolvePath("prod", query)); status != http.StatusNotFound {
			t.Fatalf("%s resolves before it is registered: %d", query, status)
		}
		editConfigMap(t, cs, nsB, "ff-registry-prod", func(d map[string]string) { d[search.key()] = search.value() })
		limit := interval + 2*time.Second
		var got resolutionBody
		took := testkit.WaitFor(t, limit, "the new app is served", func() (bool, string) {
			status, _, body := fetch(t, base, resolvePath("prod", query))
			if status != http.StatusOK {
				return false, strconv.Itoa(status) + " " + string(body)
			}
			return json.Unmarshal(body, &got) == nil, string(body)
		})
		t.Logf("a write made with the API server was served after %v (poll interval %v)", took.Round(time.Millisecond), interval)
		if got.AppID != "search-service" || len(got.Instances) != 1 || got.Instances[0].LeaseID != search.lease {
			t.Errorf("resolution = %+v, want search-service lease %d", got, search.lease)
		}
	})
}

// waitPolls waits until serve has completed n more polls.
func waitPolls(t *testing.T, base string, n int, interval time.Duration) {
	t.Helper()
	start := mustMetric(t, base, "registry_api_poll_duration_seconds_count")
	testkit.WaitFor(t, time.Duration(n+4)*interval+2*time.Second, strconv.Itoa(n)+" more polls", func() (bool, string) {
		v := mustMetric(t, base, "registry_api_poll_duration_seconds_count")
		return v >= start+float64(n), strconv.FormatFloat(v-start, 'f', -1, 64) + " polls"
	})
}

// requestRecorder is a client-go transport wrapper that keeps every request.
type requestRecorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (r *requestRecorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Clone(req.Context()))
		r.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

func (r *requestRecorder) requests() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

func (r *requestRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = nil
}

// describeRequests names each request to the API server: its kind (LIST,
// LIST metadata for a PartialObjectMetadataList, GET of one object, or the
// method), its path and query.
func describeRequests(reqs []*http.Request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		kind := r.Method
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/configmaps") {
			kind = "LIST"
			if strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadataList") {
				kind = "LIST metadata"
			}
		}
		out[i] = kind + " " + r.URL.Path
		if r.URL.RawQuery != "" {
			out[i] += "?" + r.URL.RawQuery
		}
	}
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestIntegrationOutage stops the API server under a running serve: reads go
// on from the last snapshot, the data's age shows, the logs say it once, and
// syncing resumes by itself once the API server is back.
func TestIntegrationOutage(t *testing.T) {
	srv, err := kubetest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping the kube-apiserver: %v", err)
		}
	})
	cs := adminClient(t, srv)
	suffix := uniqueSuffix(t)
	namespaces := []string{"itest-outage-" + suffix + "-a", "itest-outage-" + suffix + "-b"}
	const login = "/acme.user.v1.UserService/Login"
	for _, ns := range namespaces {
		createNamespace(t, cs, ns)
		createConfigMap(t, cs, ns, "ff-registry-prod", entries(newNode("prod", "user-service", "v1", login)))
	}
	serverURL := kubeconfigServer(t, srv.Kubeconfig)

	const interval = 200 * time.Millisecond
	logs := &testkit.Buffer{}
	base, _ := startServe(t, kubeServeConfig(srv.Kubeconfig, interval, namespaces...), logs)
	waitReady(t, base)
	_, before := getJSON(t, base, resolvePath("prod", login), nil)

	t.Run("hung API server", func(t *testing.T) {
		// A frozen API server keeps its connections open and never answers:
		// only the poller's own timeout ends each LIST.
		const listTimeout = time.Second
		var pollLogs testkit.Buffer
		restCfg, err := srv.RESTConfig()
		if err != nil {
			t.Fatal(err)
		}
		kube, err := store.NewKube(restCfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := watch.New(kube, watch.Options{
			Namespaces: namespaces, Interval: interval, ListTimeout: listTimeout, TTL: itestTTL, Log: zerolog.New(&pollLogs),
		})
		if err != nil {
			t.Fatal(err)
		}
		p.Poll(t.Context())
		if !p.Snapshot().Ready() {
			t.Fatalf("poller not synced before the freeze:\n%s", pollLogs.String())
		}
		thaw := freeze(t, srv)
		began := time.Now()
		p.Poll(t.Context())
		took := time.Since(began)
		thaw()
		t.Logf("a poll of %d namespaces against the frozen API server returned after %v", len(namespaces), took.Round(time.Millisecond))
		if limit := time.Duration(len(namespaces))*listTimeout + 2*time.Second; took > limit {
			t.Errorf("poll took %v, want at most %v", took, limit)
		}
		if n := strings.Count(pollLogs.String(), "context deadline exceeded"); n != len(namespaces) {
			t.Errorf("%d timed-out LISTs logged, want %d:\n%s", n, len(namespaces), pollLogs.String())
		}
		// serve's own poller (default timeout) was held up meanwhile; it
		// must be polling again before the outage begins.
		waitPolls(t, base, 2, interval)
	})

	stopped := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatalf("stopping the kube-apiserver: %v", err)
	}
	t.Logf("API server stopped in %v", time.Since(stopped).Round(time.Millisecond))

	pollErrors := func() float64 { v, _ := metricValue(t, base, "registry_api_poll_errors_total"); return v }
	took := testkit.WaitFor(t, 5*time.Second, "a failed poll", func() (bool, string) {
		return pollErrors() >= float64(len(namespaces)), "no poll error yet"
	})
	t.Logf("first failed polls %v after the API server was gone", took.Round(time.Millisecond))
	hdr, _ := getJSON(t, base, resolvePath("prod", login), nil)
	syncedAt := hdr.Get("X-Registry-Synced-At")
	age0 := mustMetric(t, base, "registry_api_snapshot_age_seconds")
	errs0 := pollErrors()
	outage := time.Now()

	// For several poll intervals, and at least 2s because the header counts
	// whole seconds: every read is answered from the last snapshot.
	var reads int
	testkit.WaitFor(t, 15*time.Second, "poll errors piling up through the outage", func() (bool, string) {
		status, hdr, body := fetch(t, base, resolvePath("prod", login))
		if status != http.StatusOK || !bytes.Equal(body, before) {
			t.Fatalf("resolution during the outage = %d %s, want 200 %s", status, body, before)
		}
		if got := hdr.Get("X-Registry-Synced-At"); got != syncedAt {
			t.Fatalf("X-Registry-Synced-At moved from %s to %s with the API server down", syncedAt, got)
		}
		if status, _, body := fetch(t, base, "/readyz"); status != http.StatusOK {
			t.Fatalf("/readyz during the outage = %d %s, want 200: the last data stays servable", status, body)
		}
		reads++
		errs := pollErrors()
		return errs >= errs0+5*float64(len(namespaces)) && time.Since(outage) >= 2500*time.Millisecond,
			strconv.FormatFloat(errs-errs0, 'f', -1, 64) + " more poll errors"
	})
	t.Logf("%v of outage: %d reads answered from the last snapshot, %v failed LISTs",
		time.Since(stopped).Round(time.Millisecond), reads, pollErrors())
	if age := mustMetric(t, base, "registry_api_snapshot_age_seconds"); age < age0+2 {
		t.Errorf("registry_api_snapshot_age_seconds = %v, was %v when the outage was seen %v ago: the data's age must show",
			age, age0, time.Since(outage).Round(time.Millisecond))
	}
	for _, ns := range namespaces {
		if v := mustMetric(t, base, "registry_api_poll_errors_total", `namespace="`+ns+`"`); v < 5 {
			t.Errorf("poll errors for %s = %v, want at least 5", ns, v)
		}
	}
	failed := countLogs(t, logs, "listing registry configmaps failed")
	for _, ns := range namespaces {
		if failed[ns] != 1 {
			t.Errorf("%d failure lines for %s over the streak, want exactly 1 (all: %v)", failed[ns], ns, failed)
		}
	}

	restarted := time.Now()
	if err := srv.Restart(); err != nil {
		t.Fatalf("restarting the kube-apiserver: %v", err)
	}
	t.Logf("API server back after %v", time.Since(restarted).Round(time.Millisecond))
	if now := kubeconfigServer(t, srv.Kubeconfig); now != serverURL {
		t.Fatalf("the API server came back on %s instead of %s (its port was taken meanwhile); serve cannot follow", now, serverURL)
	}
	took = testkit.WaitFor(t, 10*time.Second, "X-Registry-Synced-At advancing after the restart", func() (bool, string) {
		hdr, _ := getJSON(t, base, resolvePath("prod", login), nil)
		got := hdr.Get("X-Registry-Synced-At")
		return laterRFC3339(got, syncedAt), got
	})
	t.Logf("synced again %v after the API server was ready", took.Round(time.Millisecond))
	if age := mustMetric(t, base, "registry_api_snapshot_age_seconds"); age > 2 {
		t.Errorf("registry_api_snapshot_age_seconds = %v after recovery", age)
	}

	const query = "/acme.search.v1.SearchService/Query"
	search := newNode("prod", "search-service", "v1", query)
	editConfigMap(t, adminClient(t, srv), namespaces[1], "ff-registry-prod", func(d map[string]string) { d[search.key()] = search.value() })
	took = testkit.WaitFor(t, interval+2*time.Second, "a change made after the restart is served", func() (bool, string) {
		status, _, body := fetch(t, base, resolvePath("prod", query))
		return status == http.StatusOK && bytes.Contains(body, []byte(strconv.FormatInt(search.lease, 10))), string(body)
	})
	t.Logf("a change after the restart was served within %v", took.Round(time.Millisecond))

	recovered := countLogs(t, logs, "listing registry configmaps recovered")
	failed = countLogs(t, logs, "listing registry configmaps failed")
	for _, ns := range namespaces {
		if recovered[ns] != 1 || failed[ns] != 1 {
			t.Errorf("namespace %s: %d failure and %d recovery lines, want 1 and 1", ns, failed[ns], recovered[ns])
		}
	}
}

// freeze stops the API server process without ending it (SIGSTOP) and
// returns the function that lets it go on (SIGCONT), also called at cleanup.
func freeze(t *testing.T, srv *kubetest.Server) (thaw func()) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(srv.Dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	signal := func(sig string) error {
		out, err := exec.Command("kill", "-"+sig, pid).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kill -%s %s: %v: %s", sig, pid, err, out)
		}
		return nil
	}
	if err := signal("STOP"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			if err := signal("CONT"); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(thaw)
	return thaw
}

func kubeconfigServer(t *testing.T, path string) string {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Host
}

func laterRFC3339(a, b string) bool {
	ta, errA := time.Parse(time.RFC3339, a)
	tb, errB := time.Parse(time.RFC3339, b)
	return errA == nil && errB == nil && ta.After(tb)
}

// TestIntegrationAPIServerLimits checks the API server's answers that the
// write path classifies, through the same store as serve.
func TestIntegrationAPIServerLimits(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	ns := "itest-limits-" + uniqueSuffix(t)
	createNamespace(t, cs, ns)
	kube := &store.Kube{Client: cs}
	ctx := t.Context()
	const name = "ff-registry-prod"
	orig, err := kube.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       entries(newNode("prod", "user-service", "v1", "/acme.user.v1.UserService/Login")),
	})
	if err != nil {
		t.Fatal(err)
	}

	current := func(t *testing.T) *corev1.ConfigMap {
		t.Helper()
		cm, err := kube.Get(ctx, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		return cm
	}

	t.Run("more than 1 MiB is registry_full", func(t *testing.T) {
		full := current(t)
		// The API server counts the values' bytes; keys are free.
		size := 0
		for _, v := range full.Data {
			size += len(v)
		}
		for size <= store.MaxConfigMapBytes {
			n := newNode("prod", "bulk-service", "v1", "/acme.bulk.v1.BulkService/Load", "/acme.bulk.v1.BulkService/Store")
			full.Data[n.key()] = n.value()
			size += len(n.value())
		}
		_, err := kube.Update(ctx, full)
		if !apierrors.IsInvalid(err) {
			t.Fatalf("update with %d entries, %d bytes of values: %v, want 422 Invalid", len(full.Data), size, err)
		}
		if code := model.ErrorCode(write.Classify(err)); code != model.CodeRegistryFull {
			t.Errorf("Classify(%v) = %s, want %s", err, code, model.CodeRegistryFull)
		}
	})

	t.Run("exactly 1 MiB of values fits, keys not counted", func(t *testing.T) {
		data := map[string]string{}
		size := 0
		for {
			n := newNode("prod", "bulk-service", "v1", "/acme.bulk.v1.BulkService/Load")
			if size+len(n.value()) > store.MaxConfigMapBytes {
				break
			}
			data[n.key()] = n.value()
			size += len(n.value())
		}
		data["padding"] = strings.Repeat("x", store.MaxConfigMapBytes-size)
		if _, err := kube.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ff-registry-edge"},
			Data:       data,
		}); err != nil {
			t.Fatalf("%d entries holding exactly %d bytes of values (plus their keys): %v", len(data), store.MaxConfigMapBytes, err)
		}
	})

	t.Run("stale resourceVersion is conflict", func(t *testing.T) {
		read := current(t)
		fresh := read.DeepCopy()
		n := newNode("prod", "order-service", "v1", "/acme.order.v1.OrderService/Create")
		fresh.Data[n.key()] = n.value()
		if _, err := kube.Update(ctx, fresh); err != nil {
			t.Fatal(err)
		}
		stale := read.DeepCopy() // carries the resourceVersion before that update
		n = newNode("prod", "pay-service", "v1", "/acme.pay.v1.PayService/Charge")
		stale.Data[n.key()] = n.value()
		_, err := kube.Update(ctx, stale)
		if !apierrors.IsConflict(err) {
			t.Fatalf("update with a stale resourceVersion: %v, want 409 Conflict", err)
		}
		if code := model.ErrorCode(write.Classify(err)); code != model.CodeConflict {
			t.Errorf("Classify(%v) = %s, want %s", err, code, model.CodeConflict)
		}
	})

	t.Run("key with a slash is invalid", func(t *testing.T) {
		cm := current(t)
		n := newNode("prod", "user-service", "v1", "/acme.user.v1.UserService/Login")
		// The key the Go library builds.
		cm.Data[n.app+"/"+strconv.FormatInt(n.lease, 10)] = n.value()
		_, err := kube.Update(ctx, cm)
		if !apierrors.IsInvalid(err) {
			t.Fatalf("update with key %s/%d: %v, want 422 Invalid", n.app, n.lease, err)
		}
		// Invalid, but not for size: it must not read as a full registry.
		if code := model.ErrorCode(write.Classify(err)); code != model.CodeInvalid {
			t.Errorf("Classify(%v) = %s, want %s", err, code, model.CodeInvalid)
		}
	})

	// Only the one accepted update changed the ConfigMap.
	if got := current(t); len(got.Data) != len(orig.Data)+1 {
		t.Errorf("the ConfigMap holds %d entries, want %d", len(got.Data), len(orig.Data)+1)
	}
}

// deployNamespace is where deploy/ installs registry-api (its kustomization's
// namespace), and serviceAccount the identity its pods run as.
const (
	deployNamespace = "firefly"
	serviceAccount  = "system:serviceaccount:firefly:registry-api"
	otherNamespace  = "other"
)

// rbacMatrix is what the registry-api ServiceAccount may and may not do once
// deploy/ is applied. Rows with namespace "" ask across all namespaces.
// Issues that change the Role change or add rows here.
var rbacMatrix = []struct {
	verb, resource, namespace string
	allowed                   bool
}{
	// The read path.
	{"get", "configmaps", deployNamespace, true},
	{"list", "configmaps", deployNamespace, true},
	// The write path: create for an env's first registration, update for
	// every other write.
	{"create", "configmaps", deployNamespace, true},
	{"update", "configmaps", deployNamespace, true},
	// Authentication of writers: TokenReviews, cluster-wide.
	{"create", "tokenreviews.authentication.k8s.io", "", true},
	// Keepalive of pod-bound entries: read the pods of the watched namespace.
	{"get", "pods", deployNamespace, true},
	{"list", "pods", deployNamespace, true},
	// Version registrations: the informers of EndpointSlices and pods'
	// metadata in the watched namespace.
	{"watch", "pods", deployNamespace, true},
	{"list", "endpointslices.discovery.k8s.io", deployNamespace, true},
	{"watch", "endpointslices.discovery.k8s.io", deployNamespace, true},
	// Leader election: its own Lease in its own namespace.
	{"create", "leases.coordination.k8s.io", deployNamespace, true},
	{"get", "leases.coordination.k8s.io/registry-api", deployNamespace, true},
	{"update", "leases.coordination.k8s.io/registry-api", deployNamespace, true},
	// Nothing else.
	{"delete", "configmaps", deployNamespace, false},
	{"patch", "configmaps", deployNamespace, false},
	{"watch", "configmaps", deployNamespace, false},
	{"get", "secrets", deployNamespace, false},
	{"list", "secrets", deployNamespace, false},
	{"list", "configmaps", otherNamespace, false},
	{"update", "configmaps", otherNamespace, false},
	{"list", "configmaps", "", false},
	{"delete", "pods", deployNamespace, false},
	{"update", "pods", deployNamespace, false},
	{"create", "pods", deployNamespace, false},
	{"create", "endpointslices.discovery.k8s.io", deployNamespace, false},
	{"update", "endpointslices.discovery.k8s.io", deployNamespace, false},
	{"list", "endpointslices.discovery.k8s.io", otherNamespace, false},
	{"watch", "pods", otherNamespace, false},
	{"list", "pods", otherNamespace, false},
	{"list", "pods", "", false},
	{"update", "leases.coordination.k8s.io/kube-scheduler", deployNamespace, false},
	{"delete", "leases.coordination.k8s.io/registry-api", deployNamespace, false},
	{"get", "leases.coordination.k8s.io/registry-api", otherNamespace, false},
	{"create", "serviceaccounts", deployNamespace, false},
	{"create", "subjectaccessreviews.authorization.k8s.io", "", false},
}

// TestIntegrationDeploy applies deploy/ to a real API server, checks the
// ServiceAccount's permissions, and runs serve with that ServiceAccount's
// token alone.
func TestIntegrationDeploy(t *testing.T) {
	srv := sharedServer(t)
	cs := adminClient(t, srv)
	createNamespace(t, cs, deployNamespace)
	createNamespace(t, cs, otherNamespace)
	deployDir, err := filepath.Abs(filepath.Join("..", "..", "deploy"))
	if err != nil {
		t.Fatal(err)
	}

	if out, err := srv.Kubectl("apply", "--dry-run=server", "-k", deployDir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := srv.Kubectl("apply", "-k", deployDir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("kubectl apply -k deploy:\n%s", out)

	canI := func(verb, resource, namespace string) (bool, string) {
		args := []string{"auth", "can-i", verb, resource, "--as=" + serviceAccount}
		if namespace == "" {
			args = append(args, "--all-namespaces")
		} else {
			args = append(args, "-n", namespace)
		}
		out, err := srv.Kubectl(args...)
		answer := strings.TrimSpace(string(out))
		switch {
		case answer == "yes" && err == nil:
			return true, answer
		case strings.HasPrefix(answer, "no"): // kubectl exits 1 on no
			return false, answer
		default:
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
			return false, ""
		}
	}
	// The authorizer learns of the new RoleBinding through its informers.
	testkit.WaitFor(t, 10*time.Second, "the RoleBinding taking effect", func() (bool, string) {
		return canI("list", "configmaps", deployNamespace)
	})
	for _, row := range rbacMatrix {
		where := "-n " + row.namespace
		if row.namespace == "" {
			where = "--all-namespaces"
		}
		if got, answer := canI(row.verb, row.resource, row.namespace); got != row.allowed {
			t.Errorf("can-i %s %s %s as %s = %s, want allowed=%v", row.verb, row.resource, where, serviceAccount, answer, row.allowed)
		}
	}

	// The API server accepts tokens for its issuer's audience (the default
	// for in-cluster tokens) and for registry-api.
	out, err = srv.Kubectl("create", "token", "registry-api", "-n", deployNamespace,
		"--audience", "https://kubernetes.default.svc.cluster.local", "--duration", "10m")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	token := strings.TrimSpace(string(out))
	kubeconfig := writeTokenKubeconfig(t, srv, token)

	// The kubeconfig authenticates as the ServiceAccount, not as the admin.
	saCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	saClient, err := kubernetes.NewForConfig(saCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := saClient.CoreV1().Secrets(deployNamespace).List(t.Context(), metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing secrets with the ServiceAccount's token: %v, want Forbidden", err)
	}

	const charge = "/acme.pay.v1.PayService/Charge"
	pay := newNode("prod", "pay-service", "v1", charge)
	putRegistry(t, cs, deployNamespace, "ff-registry-prod", entries(pay))

	logs := &testkit.Buffer{}
	base, stop := startServe(t, kubeServeConfig(kubeconfig, 500*time.Millisecond, deployNamespace), logs)
	waitReady(t, base)
	var got resolutionBody
	getJSON(t, base, resolvePath("prod", charge), &got)
	if got.AppID != "pay-service" || len(got.Instances) != 1 || got.Instances[0].LeaseID != pay.lease ||
		got.Instances[0].Namespace != deployNamespace {
		t.Errorf("resolution of %s = %+v, want pay-service lease %d in %s", charge, got, pay.lease, deployNamespace)
	}
	if v, _ := metricValue(t, base, "registry_api_poll_errors_total"); v != 0 {
		t.Errorf("%v failed polls with the ServiceAccount's permissions:\n%s", v, logs.String())
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	deployWithAuth(t, srv, kubeconfig)
	deployVersions(t, srv, kubeconfig)
}

// deployWithAuth runs serve as deployed: with the ServiceAccount's token
// alone, authentication and leader election on. Its permissions suffice to
// review writers' tokens, hold the Lease and keep a pod-bound entry alive;
// and a token of another namespace's ServiceAccount cannot use it to write
// into the namespace it serves.
func deployWithAuth(t *testing.T, srv *kubetest.Server, kubeconfig string) {
	cs := adminClient(t, srv)
	createServiceAccount(t, cs, deployNamespace, "stock")
	createServiceAccount(t, cs, otherNamespace, "intruder")
	pod := createPod(t, cs, deployNamespace, "stock-"+uniqueSuffix(t), "stock")
	t.Cleanup(func() {
		zero := int64(0)
		_ = cs.CoreV1().Pods(deployNamespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})

	logs := &testkit.Buffer{}
	base, _ := startServe(t, authServeConfig(kubeconfig, deployNamespace), logs)
	waitReady(t, base)
	testkit.WaitFor(t, 10*time.Second, "leading with the ServiceAccount's permissions", func() (bool, string) {
		v, _ := metricValue(t, base, "registry_api_leader")
		return v == 1, logs.String()
	})

	instances := base + "/v1/envs/prod/apps/stock-service/instances"
	lease := newLease()
	status, _, body := authCall(t, http.MethodPost, instances, stockRegistration(lease), saToken(t, cs, deployNamespace, "stock", pod, tokenAudience))
	wantAnswer(t, "pod-bound registration", status, body, http.StatusCreated, "", "")

	intruder := saToken(t, cs, otherNamespace, "intruder", nil, tokenAudience)
	for _, target := range []string{instances, instances + "?namespace=" + deployNamespace} {
		status, _, body = authCall(t, http.MethodPost, target, stockRegistration(newLease()), intruder)
		wantAnswer(t, "registration by another namespace's ServiceAccount", status, body, http.StatusForbidden, model.CodeForbidden, "own-namespace-only")
	}
	status, _, body = authCall(t, http.MethodDelete, instances+"/"+strconv.FormatInt(lease, 10), "", intruder)
	wantAnswer(t, "deregistration by another namespace's ServiceAccount", status, body, http.StatusForbidden, model.CodeForbidden, "own-namespace-only")

	// The leader lists the pods and keeps the entry alive past the TTL.
	key := "stock-service." + strconv.FormatInt(lease, 10)
	runDate := func() time.Time {
		cm, err := cs.CoreV1().ConfigMaps(deployNamespace).Get(t.Context(), "ff-registry-prod", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		node, _, err := model.ParseEntry(deployNamespace, "prod", key, []byte(cm.Data[key]), model.ParseOptions{})
		if err != nil {
			t.Fatalf("entry %s: %v", key, err)
		}
		return node.RunDate
	}
	registered := runDate()
	testkit.WaitFor(t, 2*authServeConfig("", "").TTL+time.Second, "the leader refreshing the pod-bound entry", func() (bool, string) {
		return runDate().After(registered), "not refreshed"
	})
	if v, _ := metricValue(t, base, "registry_api_upkeep_cycles_total", `result="error"`); v != 0 {
		t.Errorf("%v failed upkeep cycles with the ServiceAccount's permissions:\n%s", v, logs.String())
	}
	if v, _ := metricValue(t, base, "registry_api_auth_requests_total", `result="error"`); v != 0 {
		t.Errorf("%v failed TokenReviews with the ServiceAccount's permissions:\n%s", v, logs.String())
	}
}

// writeTokenKubeconfig writes a kubeconfig that holds the API server's URL,
// its CA and token, and nothing of the admin's credentials.
func writeTokenKubeconfig(t *testing.T, srv *kubetest.Server, token string) string {
	t.Helper()
	admin, err := srv.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(admin.CAData) == 0 {
		t.Fatal("the admin kubeconfig carries no CA data")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kube-test"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: admin.CAData}
	cfg.AuthInfos["registry-api"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["registry-api"] = &clientcmdapi.Context{Cluster: "kube-test", AuthInfo: "registry-api", Namespace: deployNamespace}
	cfg.CurrentContext = "registry-api"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	adminToken, err := os.ReadFile(filepath.Join(srv.Dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if tok := strings.TrimSpace(string(adminToken)); tok == "" || bytes.Contains(written, []byte(tok)) {
		t.Fatal("the ServiceAccount's kubeconfig holds the admin token")
	}
	return path
}

// putRegistry creates or replaces a registry ConfigMap's data.
func putRegistry(t *testing.T, cs kubernetes.Interface, ns, name string, data map[string]string) {
	t.Helper()
	_, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		createConfigMap(t, cs, ns, name, data)
	case err != nil:
		t.Fatal(err)
	default:
		editConfigMap(t, cs, ns, name, func(d map[string]string) {
			clear(d)
			for k, v := range data {
				d[k] = v
			}
		})
	}
}

// TestIntegrationBuild checks that `make build` makes a static, trimmed,
// version-stamped binary; TestDockerfile checks that the Dockerfile builds
// with it.
func TestIntegrationBuild(t *testing.T) {
	t.Run("make build", func(t *testing.T) {
		version := "itest-" + uniqueSuffix(t)
		bin := filepath.Join(t.TempDir(), "registry-api")
		makeBuild(t, version, bin)

		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != version {
			t.Errorf("%s --version = %q, %v; want %s", bin, out, err, version)
		}

		out, err = exec.Command("go", "version", "-m", bin).CombinedOutput()
		if err != nil {
			t.Fatalf("go version -m: %v\n%s", err, out)
		}
		settings := map[string]string{}
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "build" {
				k, v, _ := strings.Cut(f[1], "=")
				settings[k] = v
			}
		}
		for k, want := range map[string]string{"CGO_ENABLED": "0", "-trimpath": "true"} {
			if settings[k] != want {
				t.Errorf("build setting %s = %q, want %q\n%s", k, settings[k], want, out)
			}
		}

		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("binary has a %v program header: it is dynamically linked", p.Type)
			}
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) != 0 {
			t.Errorf("binary needs shared libraries %q (%v)", libs, err)
		}
	})
}

// itestTTL keeps the seeded heartbeats alive for the whole test: liveness is
// not what these tests are about, and nothing here refreshes run_date.
const itestTTL = 10 * time.Minute

// node is a registry entry as the Go registry library writes it.
type node struct {
	env, app, version string
	lease             int64
	runDate           time.Time
	methods           []string
}

var leaseSeq atomic.Int64

// newLease returns a lease id as the library chooses one (its start time in
// nanoseconds), made odd so that a float64 cannot hold it exactly: a reader
// that goes through float64 anywhere changes it.
func newLease() int64 {
	return (time.Now().UnixNano() + 2*leaseSeq.Add(1)) | 1
}

func newNode(env, app, version string, methods ...string) node {
	return node{env: env, app: app, version: version, lease: newLease(), runDate: time.Now(), methods: methods}
}

// key is the canonical data key, <appId>.<leaseId>.
func (n node) key() string { return n.app + "." + strconv.FormatInt(n.lease, 10) }

// value is the entry's JSON byte for byte as the library writes it: compact,
// its struct's field order, map keys sorted, run_date in UTC without a zone.
func (n node) value() string {
	methods := slices.Sorted(slices.Values(n.methods))
	var m strings.Builder
	for i, name := range methods {
		if i > 0 {
			m.WriteByte(',')
		}
		fmt.Fprintf(&m, "%q:true", name)
	}
	return fmt.Sprintf(`{"proto_count":1,"lease_id":%d,"run_date":%q,"methods":{%s},`+
		`"network":{"sn":"firefly-main-network","internal":"%s:8080","external":"127.0.0.1"},`+
		`"kernel":{"language":"Golang","version":"v0.0.1"},`+
		`"meta":{"env":%q,"app_id":%q,"version":%q}}`,
		n.lease, n.runDate.UTC().Format(time.DateTime), m.String(), n.app, n.env, n.app, n.version)
}

func entries(nodes ...node) map[string]string {
	data := make(map[string]string, len(nodes))
	for _, n := range nodes {
		data[n.key()] = n.value()
	}
	return data
}

func uniqueSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func adminClient(t *testing.T, s *kubetest.Server) kubernetes.Interface {
	t.Helper()
	cs, err := s.Clientset()
	if err != nil {
		t.Fatalf("admin clientset: %v", err)
	}
	return cs
}

// createNamespace creates ns; one that exists already is fine.
func createNamespace(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
}

func createConfigMap(t *testing.T, cs kubernetes.Interface, ns, name string, data map[string]string) *corev1.ConfigMap {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating configmap %s/%s: %v", ns, name, err)
	}
	return cm
}

// editConfigMap changes a ConfigMap as a Go service using the library does:
// Get, change data, Update with the resourceVersion read, again on conflict.
func editConfigMap(t *testing.T, cs kubernetes.Interface, ns, name string, change func(data map[string]string)) *corev1.ConfigMap {
	t.Helper()
	var out *corev1.ConfigMap
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		change(cm.Data)
		out, err = cs.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("updating configmap %s/%s: %v", ns, name, err)
	}
	return out
}

// getJSON GETs path, requires status 200 and decodes the body into v.
func getJSON(t *testing.T, base, path string, v any) (http.Header, []byte) {
	t.Helper()
	status, hdr, body := fetch(t, base, path)
	if status != http.StatusOK {
		t.Fatalf("GET %s = %d, want 200: %s", path, status, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: decoding %s: %v", path, body, err)
		}
	}
	return hdr, body
}

// logLines decodes serve's JSON log lines.
func logLines(t *testing.T, logs *testkit.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// countLogs counts the log lines whose message starts with msgPrefix, by
// their namespace field.
func countLogs(t *testing.T, logs *testkit.Buffer, msgPrefix string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, l := range logLines(t, logs) {
		if msg, _ := l["message"].(string); strings.HasPrefix(msg, msgPrefix) {
			ns, _ := l["namespace"].(string)
			counts[ns]++
		}
	}
	return counts
}

// kubeServeConfig is serve's configuration against an API server.
// Writes need no token here: these tests are about the store, and the tests
// of authentication set Auth themselves. GC is off (GCAfter 0).
func kubeServeConfig(kubeconfig string, interval time.Duration, namespaces ...string) Config {
	return Config{
		Addr:            "127.0.0.1:0",
		Store:           "kube",
		Kubeconfig:      kubeconfig,
		Namespaces:      namespaces,
		PollInterval:    interval,
		TTL:             itestTTL,
		RunDateZone:     "UTC",
		LogLevel:        "info",
		LogFormat:       "json",
		ShutdownTimeout: 5 * time.Second,
		Auth:            authNone,
	}
}

// The API's bodies, as far as the tests look into them.
type (
	countsBody struct {
		Alive int `json:"alive"`
		Stale int `json:"stale"`
	}
	envSummaryBody struct {
		Env            string     `json:"env"`
		Namespaces     []string   `json:"namespaces"`
		Apps           int        `json:"apps"`
		Methods        int        `json:"methods"`
		Instances      countsBody `json:"instances"`
		InvalidEntries int        `json:"invalid_entries"`
	}
	issueBody struct {
		Namespace string `json:"namespace"`
		Key       string `json:"key"`
		Reason    string `json:"reason"`
	}
	envDetailBody struct {
		Env            string      `json:"env"`
		Namespaces     []string    `json:"namespaces"`
		InvalidEntries []issueBody `json:"invalid_entries"`
		Warnings       []issueBody `json:"warnings"`
	}
	appSummaryBody struct {
		AppID     string     `json:"app_id"`
		Versions  []string   `json:"versions"`
		Instances countsBody `json:"instances"`
		Methods   int        `json:"methods"`
	}
	resolutionBody struct {
		Method    string `json:"method"`
		AppID     string `json:"app_id"`
		Instances []struct {
			Key       string `json:"key"`
			LeaseID   int64  `json:"lease_id,string"`
			Namespace string `json:"namespace"`
			Version   string `json:"version"`
			Network   struct {
				Internal string `json:"internal"`
			} `json:"network"`
		} `json:"instances"`
	}
)

// resolvePath is the route that resolves a gRPC method in env.
func resolvePath(env, method string) string {
	return "/v1/envs/" + env + "/methods/" + strings.TrimPrefix(method, "/")
}
