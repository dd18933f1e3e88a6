package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/acme/registry-api/internal/kubetest"
	"github.com/acme/registry-api/internal/model"
)

// runPoll measures what polling costs one replica over a real API server
// (bin/kube-test-apiserver, `make kube-apiserver`) holding the
// 10,000-instance seed: the replica's CPU and the bytes it exchanges with the
// API server per poll, first with nothing changing for d, then for d with
// one ConfigMap rewritten (one entry's heartbeat) every poll interval. The
// replica is read-only, so that no leader's upkeep is counted with its polls.
// Its connection to the API server goes through a TCP proxy of this tool,
// which counts the bytes on the wire (TLS, HTTP/2 and any compression
// included): what the API server sends each replica.
func runPoll(bin string, d time.Duration) error {
	srv, dir, stopAPIServer, err := startAPIServer("registry-polltest")
	if err != nil {
		return err
	}
	defer stopAPIServer()
	apiPID, err := readPID(filepath.Join(srv.Dir, "pid"))
	if err != nil {
		return err
	}
	cs, err := srv.Clientset()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := seedAPIServer(ctx, cs); err != nil {
		return err
	}
	list, err := cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/firefly/configmaps").
		Param("resourceVersion", "0").DoRaw(ctx)
	if err != nil {
		return err
	}
	// The same list as a metadata client asks for it.
	meta, err := cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/namespaces/firefly/configmaps").
		SetHeader("Accept", "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1").
		Param("resourceVersion", "0").DoRaw(ctx)
	if err != nil {
		return err
	}

	restCfg, err := srv.RESTConfig()
	if err != nil {
		return err
	}
	proxy, err := startCountingProxy(strings.TrimPrefix(restCfg.Host, "https://"))
	if err != nil {
		return err
	}
	defer proxy.ln.Close()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := proxiedKubeconfig(srv.Kubeconfig, kubeconfig, proxy.ln.Addr().String()); err != nil {
		return err
	}

	fmt.Printf("seed: %d envs x %d instances x %d methods per instance in namespace firefly; a LIST of it is %.1f MB of JSON, its metadata alone %s of protobuf\n",
		envs, appsPerEnv*instancesPerApp, methodsPerApp, float64(len(list))/1e6, byteSize(float64(len(meta))))
	// The replica's poll interval, as it reads it: the default unless this
	// tool's environment sets one, which comparing intervals does.
	interval := 2 * time.Second
	if v := os.Getenv("REGISTRY_POLL_INTERVAL"); v != "" {
		if interval, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("REGISTRY_POLL_INTERVAL=%q: %w", v, err)
		}
	}
	fmt.Printf("one read-only replica, REGISTRY_POLL_INTERVAL=%s; %s per phase\n\n", interval, d)
	fmt.Println("| phase | polls | replica CPU per poll | replica CPU, share of a core | bytes from the API server per poll | bytes to it per poll | API server CPU per poll |")
	fmt.Println("|---|---|---|---|---|---|---|")

	// What the API server (and its embedded etcd) spends with no replica,
	// taken out of its CPU per poll below.
	apiBefore, err := cpuTime(apiPID)
	if err != nil {
		return err
	}
	time.Sleep(d)
	apiAfter, err := cpuTime(apiPID)
	if err != nil {
		return err
	}
	apiIdle := (apiAfter - apiBefore).Seconds() / d.Seconds() // a share of a core
	fmt.Printf("| no replica: the API server alone | | | | | | %.1f%% of a core |\n", 100*apiIdle)

	base, cmd, stopReplica, err := startKubeReplica(bin, kubeconfig, "REGISTRY_NAMESPACES=firefly", "REGISTRY_READ_ONLY=true")
	if err != nil {
		return err
	}
	defer stopReplica()
	pid := cmd.Process.Pid

	phase := func(name string) error {
		// The first polls parse the seed; what is measured comes after.
		if err := pollsAfter(base, 3); err != nil {
			return err
		}
		polls0, err := pollCount(base)
		if err != nil {
			return err
		}
		cpu0, err := cpuTime(pid)
		if err != nil {
			return err
		}
		api0, err := cpuTime(apiPID)
		if err != nil {
			return err
		}
		down0, up0 := proxy.down.Load(), proxy.up.Load()
		start := time.Now()
		time.Sleep(d)
		cpu1, err := cpuTime(pid)
		if err != nil {
			return err
		}
		api1, err := cpuTime(apiPID)
		if err != nil {
			return err
		}
		down1, up1 := proxy.down.Load(), proxy.up.Load()
		elapsed := time.Since(start)
		polls1, err := pollCount(base)
		if err != nil {
			return err
		}
		polls := polls1 - polls0
		if polls <= 0 {
			return fmt.Errorf("%s: no poll in %s", name, elapsed)
		}
		apiPerPoll := time.Duration((float64(api1-api0) - apiIdle*float64(elapsed)) / polls)
		fmt.Printf("| %s | %.0f | %.2f ms | %.2f%% | %s | %s | %.2f ms |\n", name, polls,
			ms(cpu1-cpu0)/polls, 100*float64(cpu1-cpu0)/float64(elapsed),
			byteSize(float64(down1-down0)/polls), byteSize(float64(up1-up0)/polls), ms(apiPerPoll))
		return nil
	}
	if err := phase("at rest: nothing changes"); err != nil {
		return err
	}
	stop := make(chan struct{})
	written := make(chan error, 1)
	go func() { written <- heartbeatOneConfigMapPerInterval(ctx, cs, interval, stop) }()
	err = phase("one ConfigMap written per poll interval")
	close(stop)
	return errors.Join(err, <-written)
}

// seedAPIServer creates namespace firefly and the seed's ConfigMaps in it.
func seedAPIServer(ctx context.Context, cs kubernetes.Interface) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "firefly"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	cms, err := seedConfigMaps()
	if err != nil {
		return err
	}
	for i := range cms {
		if _, err := cs.CoreV1().ConfigMaps("firefly").Create(ctx, &cms[i], metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// heartbeatOneConfigMapPerInterval rewrites one entry's run_date every
// interval, in the next env's ConfigMap each time, as one instance's
// heartbeat does, until stop is closed.
func heartbeatOneConfigMapPerInterval(ctx context.Context, cs kubernetes.Interface, interval time.Duration, stop <-chan struct{}) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case <-ticker.C:
		}
		name := model.ConfigMapName(fmt.Sprintf("env-%02d", i%envs))
		cm, err := cs.CoreV1().ConfigMaps("firefly").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		key := slices.Sorted(maps.Keys(cm.Data))[0]
		fresh, err := model.RefreshRunDate([]byte(cm.Data[key]), time.Now(), nil)
		if err != nil {
			return err
		}
		cm.Data[key] = string(fresh)
		if _, err := cs.CoreV1().ConfigMaps("firefly").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
}

// countingProxy forwards TCP connections to target and counts the bytes
// each way as they pass.
type countingProxy struct {
	ln       net.Listener
	target   string
	down, up atomic.Int64 // from target, and to it
}

func startCountingProxy(target string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
	return p, nil
}

func (p *countingProxy) forward(c net.Conn) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(countingWriter{s, &p.up}, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(countingWriter{c, &p.down}, s); done <- struct{}{} }()
	<-done // either side gone: the deferred closes end the other copy
}

// countingWriter counts as it writes: the proxied connections are long-lived
// (HTTP/2), so their totals would come too late.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// proxiedKubeconfig writes a copy of the kubeconfig at from whose clusters
// are reached through addr.
func proxiedKubeconfig(from, to, addr string) error {
	cfg, err := clientcmd.LoadFromFile(from)
	if err != nil {
		return err
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + addr
	}
	return clientcmd.WriteToFile(*cfg, to)
}

func readPID(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(raw)))
}

// pollCount is the number of polls the replica has finished.
func pollCount(base string) (float64, error) {
	raw, err := scrape(http.DefaultClient, base)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(raw) {
		if v, ok := strings.CutPrefix(line, "registry_api_poll_duration_seconds_count "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, errors.New("no registry_api_poll_duration_seconds_count in /metrics")
}

// pollsAfter waits until the replica has finished n more polls.
func pollsAfter(base string, n float64) error {
	start, err := pollCount(base)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		now, err := pollCount(base)
		if err != nil {
			return err
		}
		if now >= start+n {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("fewer than %.0f polls in a minute", n)
}

func byteSize(b float64) string {
	switch {
	case b >= 1e6:
		return fmt.Sprintf("%.2f MB", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.1f kB", b/1e3)
	}
	return fmt.Sprintf("%.0f B", b)
}

// startAPIServer starts a real API server (the integration suite's) in a new
// temporary folder named for the run; stop stops it and removes the folder.
func startAPIServer(name string) (srv *kubetest.Server, dir string, stop func(), err error) {
	dir, err = os.MkdirTemp("", name)
	if err != nil {
		return nil, "", nil, err
	}
	srv, err = kubetest.Start(filepath.Join(dir, "apiserver"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return srv, dir, func() {
		_ = srv.Stop()
		_ = os.RemoveAll(dir)
	}, nil
}

// startKubeReplica runs bin over the API server of kubeconfig, with env and
// warnings only in its log, and waits until it is ready; stop interrupts it
// and waits for it to exit.
func startKubeReplica(bin, kubeconfig string, env ...string) (base string, cmd *exec.Cmd, stop func(), err error) {
	addr, err := freeAddr()
	if err != nil {
		return "", nil, nil, err
	}
	cmd = exec.Command(bin)
	cmd.Env = append(append(os.Environ(), "REGISTRY_ADDR="+addr, "REGISTRY_STORE=kube", "REGISTRY_KUBECONFIG="+kubeconfig,
		"REGISTRY_LOG_LEVEL=warn"), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
	base = "http://" + addr
	if err := waitReady(base + "/readyz"); err != nil {
		stop()
		return "", nil, nil, err
	}
	return base, cmd, stop, nil
}
