package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/acme/registry-api/internal/model"
)

// The scale for version registrations; -versions-apps and
// -versions-followers shrink it for a trial run.
var (
	versionApps      = 300
	versionFollowers = 1000
)

const (
	versionsPerApp     = 2
	versionMethods     = 20
	endpointsPerVer    = 60
	versionRolloutWait = 30 * time.Second
)

// runVersions measures version registrations at the scale over a
// real API server (bin/kube-test-apiserver): 300 apps × 2 versions × 20
// methods, registered with authentication on by one ServiceAccount per app,
// 60 ready endpoints per version (36,000, with their pods' version labels).
// It reports the ConfigMap writes of a rollout storm of 36,000 PUTs and the
// ConfigMap's size, how long a rolling update of one version (its 60
// endpoints replaced) takes to reach 1,000 event streams and whether it
// writes anything, the replica's memory, and the writes of d at rest with
// REGISTRY_VERSION_REFRESH=false.
func runVersions(bin string, d time.Duration) error {
	srv, _, stopAPIServer, err := startAPIServer("registry-versiontest")
	if err != nil {
		return err
	}
	defer stopAPIServer()
	restCfg, err := srv.RESTConfig()
	if err != nil {
		return err
	}
	// Seeding creates 36,000 pods: client-go's default 5 requests a second
	// would take two hours.
	restCfg.QPS, restCfg.Burst = 2000, 4000
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	ctx := context.Background()
	const ns = "firefly"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// No controller creates the ServiceAccount pods run as by default.
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	start := time.Now()
	if err := seedEndpoints(ctx, cs, ns); err != nil {
		return err
	}
	fmt.Printf("seed: %d apps x %d versions x %d methods; %d ready endpoints with their pods, created in %s\n",
		versionApps, versionsPerApp, versionMethods, versionApps*versionsPerApp*endpointsPerVer, time.Since(start).Round(time.Second))
	tokens, err := appTokens(ctx, cs, ns)
	if err != nil {
		return err
	}

	base, cmd, stopReplica, err := startKubeReplica(bin, srv.Kubeconfig,
		"REGISTRY_NAMESPACES="+ns, "REGISTRY_AUTH=kubernetes", "REGISTRY_VERSION_REFRESH=false",
		"REGISTRY_MAX_FOLLOWERS="+strconv.Itoa(versionFollowers+100), "POD_NAMESPACE="+ns)
	if err != nil {
		return err
	}
	defer stopReplica()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

	// The rollout storm: every pod of every version PUTs the same body.
	writes0, err := storeWrites(c, base)
	if err != nil {
		return err
	}
	var failed atomic.Int64
	var firstErr atomic.Value
	jobs := make(chan [2]int)
	var wg sync.WaitGroup
	start = time.Now()
	for range 64 {
		wg.Go(func() {
			for j := range jobs {
				if err := putVersion(c, base, j[0], j[1], tokens[j[0]]); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	// Every pod of every version, the versions' pods interleaved as
	// rollouts of many apps are.
	for range endpointsPerVer {
		for a := range versionApps {
			for v := range versionsPerApp {
				jobs <- [2]int{a, v}
			}
		}
	}
	close(jobs)
	wg.Wait()
	storm := time.Since(start)
	writes1, err := storeWrites(c, base)
	if err != nil {
		return err
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, model.ConfigMapName("prod"), metav1.GetOptions{})
	if err != nil {
		return err
	}
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
	}
	fmt.Printf("\n| measure | value |\n|---|---|\n")
	fmt.Printf("| PUTs of the rollout storm | %d in %s, %d failed |\n", versionApps*versionsPerApp*endpointsPerVer, storm.Round(time.Millisecond), failed.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf("| first failure | %v |\n", e)
	}
	fmt.Printf("| ConfigMap writes of the storm | %.0f (at most %d allowed) |\n", writes1-writes0, versionApps*versionsPerApp)
	fmt.Printf("| entries, ConfigMap data | %d, %s (REGISTRY_MAX_CONFIGMAP_BYTES 900 KiB) |\n", len(cm.Data), byteSize(float64(size)))

	// Every version alive by its endpoints, as the route table says.
	if err := waitInstances(c, base, versionApps*versionsPerApp*endpointsPerVer); err != nil {
		return err
	}

	// A rolling update of app-000 v1 under 1,000 streams.
	followers := make([]*follower, 0, versionFollowers)
	for range versionFollowers {
		f, err := openStream(c, base+"/v1/envs/prod/routes/events")
		if err != nil {
			return err
		}
		defer f.close()
		followers = append(followers, f)
	}
	for _, f := range followers {
		f.waitSnapshot()
	}
	// The new pods exist first; the rollout is two changes of the slice
	// (a table whose counts stay put does not change): the old pods go
	// unready, then the new ones become ready.
	if err := createVersionPods(ctx, cs, ns, 0, 0, "r1"); err != nil {
		return err
	}
	rv0 := cm.ResourceVersion
	writes0, _ = storeWrites(c, base)
	var lat []time.Duration
	for k, step := range [][]generation{{{"r0", false}, {"r1", false}}, {{"r1", true}}} {
		start = time.Now()
		if err := putVersionSlice(ctx, cs, ns, 0, 0, step...); err != nil {
			return err
		}
		l, err := waitAll(followers, k+1, start, versionRolloutWait)
		if err != nil {
			return err
		}
		lat = append(lat, l...)
	}
	writes1, _ = storeWrites(c, base)
	after, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, model.ConfigMapName("prod"), metav1.GetOptions{})
	if err != nil {
		return err
	}
	fmt.Printf("| rolling update of one version (%d endpoints replaced, two changes) to %d streams | p50 %.0f ms, p99 %.0f ms, max %.0f ms |\n",
		endpointsPerVer, versionFollowers, ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100)))
	fmt.Printf("| ConfigMap writes of the rolling update | %.0f (resourceVersion %s -> %s) |\n", writes1-writes0, rv0, after.ResourceVersion)
	mem, err := serverMemory(c, base)
	if err != nil {
		return err
	}
	rss, err := rssKiB(cmd.Process.Pid, "VmRSS")
	if err != nil {
		return err
	}
	fmt.Printf("| replica memory with all of it | RSS %d MiB, heap and stacks %d MiB |\n", rss/1024, mem>>20)

	// At rest with the refresh off.
	writes0, _ = storeWrites(c, base)
	time.Sleep(d)
	writes1, _ = storeWrites(c, base)
	fmt.Printf("| ConfigMap writes in %s at rest, REGISTRY_VERSION_REFRESH=false | %.0f |\n", d, writes1-writes0)
	return nil
}

func versionName(v int) string { return "v" + strconv.Itoa(v+1) }
func appName(a int) string     { return fmt.Sprintf("app-%03d", a) }

// seedEndpoints creates every version's pods (labelled) and one
// EndpointSlice of its ready endpoints; the test API server runs no
// controllers, so nothing else would.
func seedEndpoints(ctx context.Context, cs kubernetes.Interface, ns string) error {
	var wg sync.WaitGroup
	errs := make(chan error, versionApps)
	sem := make(chan struct{}, 32)
	for a := range versionApps {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for v := range versionsPerApp {
				if err := putVersionEndpoints(ctx, cs, ns, a, v, "r0"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// putVersionEndpoints creates the version's 60 pods of generation gen and
// makes its EndpointSlice list them, ready.
func putVersionEndpoints(ctx context.Context, cs kubernetes.Interface, ns string, a, v int, gen string) error {
	if err := createVersionPods(ctx, cs, ns, a, v, gen); err != nil {
		return err
	}
	return putVersionSlice(ctx, cs, ns, a, v, generation{gen, true})
}

// generation is a version's pods of one rollout, ready or not.
type generation struct {
	name  string
	ready bool
}

func podName(a, v int, gen string, p int) string {
	return fmt.Sprintf("%s-%s-%s-%02d", appName(a), versionName(v), gen, p)
}

func createVersionPods(ctx context.Context, cs kubernetes.Interface, ns string, a, v int, gen string) error {
	for p := range endpointsPerVer {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: podName(a, v, gen, p), Labels: map[string]string{"app": appName(a), "version": versionName(v)}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}}},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// putVersionSlice makes the version's EndpointSlice list the pods of gens.
func putVersionSlice(ctx context.Context, cs kubernetes.Interface, ns string, a, v int, gens ...generation) error {
	app, version := appName(a), versionName(v)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: app + "-" + version, Labels: map[string]string{discoveryv1.LabelServiceName: app}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for g, gen := range gens {
		ready := gen.ready
		for p := range endpointsPerVer {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", a/250, a%250, g*120+v*60+p+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: podName(a, v, gen.name, p)},
			})
		}
	}
	slices := cs.DiscoveryV1().EndpointSlices(ns)
	old, err := slices.Get(ctx, es.Name, metav1.GetOptions{})
	if err == nil {
		es.ResourceVersion = old.ResourceVersion
		_, err = slices.Update(ctx, es, metav1.UpdateOptions{})
		return err
	}
	_, err = slices.Create(ctx, es, metav1.CreateOptions{})
	return err
}

// appTokens creates one ServiceAccount per app and a token for the
// audience registry-api.
func appTokens(ctx context.Context, cs kubernetes.Interface, ns string) ([]string, error) {
	out := make([]string, versionApps)
	expiry := int64(3600)
	for a := range versionApps {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: appName(a)}}
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, appName(a), &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"registry-api"}, ExpirationSeconds: &expiry},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		out[a] = tr.Status.Token
	}
	return out, nil
}

func putVersion(c *http.Client, base string, a, v int, token string) error {
	app := appName(a)
	var methods []string
	for m := range versionMethods {
		methods = append(methods, fmt.Sprintf(`"/acme.a%03d.v1.Service/M%02d"`, a, m))
	}
	body := `{"network":{"sn":"firefly-main-network","internal":"` + app + `:9000"},"methods":[` + strings.Join(methods, ",") +
		`],"kernel":{"language":"Golang","version":"v0.0.1"}}`
	req, err := http.NewRequest(http.MethodPut, base+"/v1/envs/prod/apps/"+app+"/versions/"+versionName(v), strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT %s %s: %d %s", app, versionName(v), resp.StatusCode, raw)
	}
	return nil
}

// storeWrites is the replica's count of ConfigMap creates and updates.
func storeWrites(c *http.Client, base string) (float64, error) {
	raw, err := scrape(c, base)
	if err != nil {
		return 0, err
	}
	total := 0.0
	for line := range strings.Lines(raw) {
		if strings.HasPrefix(line, "registry_api_store_writes_total{") && strings.Contains(line, `result="ok"`) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, err
			}
			total += v
		}
	}
	return total, nil
}

// waitInstances waits until env prod counts n alive instances.
func waitInstances(c *http.Client, base string, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var body []byte
		resp, err := c.Get(base + "/v1/envs/prod")
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"alive":`+strconv.Itoa(n)+`,`) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("env prod does not count %d alive instances within 2m", n), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
