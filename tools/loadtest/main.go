// Command loadtest measures registry-api's read path against a bare net/http
// handler that writes the same bytes with the same headers, on loopback:
// a 50-env × 200-instance × 20-method seed, served by the real binary with
// its default configuration (request logging included), and the bare
// handler in a process of its own. The load comes from wrk. Both servers
// are pinned to one core and wrk to another (taskset), so that neither
// the load generator nor the other server competes for the server's core.
// Rounds alternate between the two servers so that both see the same
// machine. `make loadtest` runs it; results go in BENCHMARKS.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/acme/registry-api/internal/model"
)

const (
	envs            = 50
	appsPerEnv      = 10
	instancesPerApp = 20 // 200 instances per env
	methodsPerApp   = 20
)

func main() {
	bin := flag.String("bin", "bin/registry-api", "the registry-api binary to measure")
	round := flag.Duration("round", 3*time.Second, "length of one measured round")
	rounds := flag.Int("rounds", 5, "rounds per target, connection count and server (interleaved)")
	conns := flag.String("c", "16,64", "concurrent persistent connections, a comma-separated list")
	serverCPU := flag.Int("server-cpu", 0, "the core both servers are pinned to")
	clientCPU := flag.Int("client-cpu", 1, "the core wrk is pinned to")
	bare := flag.String("bare", "", "internal: serve the captured answer in this file as the bare handler")
	followers := flag.Int("followers", 0, "instead: open this many event streams and as many blocked queries, and time registrations reaching them")
	hostile := flag.Duration("hostile", 0, "instead: send hostile requests of every kind for this long and report the server's peak memory")
	memLimit := flag.String("memlimit", deploymentMemLimit, "with -hostile: the server's GOMEMLIMIT (as the deployment sets it)")
	stallers := flag.Int("stallers", 600, "with -hostile: connections that stall their bodies (more than REGISTRY_MAX_IN_FLIGHT)")
	poll := flag.Duration("poll", 0, "instead: measure one replica's polls over a real API server holding the seed, for this long at rest and as long with one ConfigMap written per poll")
	versions := flag.Duration("versions", 0, "instead: version registrations at the issue's scale over a real API server (300 apps x 2 versions x 20 methods, 36,000 ready endpoints): the writes of a rollout storm, a rolling update reaching 1,000 streams, memory, then the writes of this long at rest")
	flag.IntVar(&versionApps, "versions-apps", versionApps, "with -versions: apps registered (a smaller number for a trial run)")
	flag.IntVar(&versionFollowers, "versions-followers", versionFollowers, "with -versions: event streams that the rolling update must reach")
	flag.Parse()
	if *versions > 0 {
		if err := runVersions(*bin, *versions); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *poll > 0 {
		if err := runPoll(*bin, *poll); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *hostile > 0 {
		if err := runHostile(*bin, *memLimit, *hostile, *stallers); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *followers > 0 {
		if err := runFollow(*bin, *followers, 3); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	if *bare != "" {
		if err := serveBare(*bare); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var cs []int
	for f := range strings.SplitSeq(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "loadtest: -c %q: want connection counts such as 16,64\n", *conns)
			os.Exit(2)
		}
		cs = append(cs, n)
	}
	// The tool reads the registry's request log; on the servers' core that
	// would take their time, so it runs on wrk's.
	if os.Getenv(pinnedEnv) == "" {
		if err := runPinned(*clientCPU); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		return
	}
	l := loadRun{bin: *bin, round: *round, rounds: *rounds, conns: cs, serverCPU: *serverCPU, clientCPU: *clientCPU}
	if err := l.run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// pinnedEnv marks the load test's own process as pinned to wrk's core.
const pinnedEnv = "LOADTEST_PINNED"

// runPinned runs this command again, pinned to cpu.
func runPinned(cpu int) error {
	if err := needTools(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), pinnedEnv+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// loadRun is one measurement of every target at every connection count.
type loadRun struct {
	bin                  string
	round                time.Duration
	rounds               int
	conns                []int
	serverCPU, clientCPU int
}

// target is one read view the load test measures.
type target struct{ name, path string }

var targets = []target{
	{"resolution", "/v1/envs/env-07/methods/acme.app3.v1.Service/M5"},
	{"routes of one app", "/v1/envs/env-07/routes?app=app-3"},
	// What a gateway reads before its app has registered: the env's routes
	// filtered by an app the env does not have, an empty list.
	{"empty answer (routes of an absent app)", "/v1/envs/env-07/routes?app=app-none"},
	{"routes of an env (200 methods)", "/v1/envs/env-07/routes"},
}

// needTools says how to get what the load test runs, before it starts.
func needTools() error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed; on Debian or Ubuntu: apt-get install wrk")
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return errors.New("taskset is not installed; on Debian or Ubuntu: apt-get install util-linux")
	}
	return nil
}

func (l loadRun) run() error {
	if err := needTools(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "registry-loadtest")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The default configuration logs every request as JSON to stdout; a
	// pipe that is read, as a container runtime's is.
	reg, err := startRegistryCmd(l.pinned(l.serverCPU, l.bin), io.Discard, "REGISTRY_SEED_KEEPALIVE=true")
	if err != nil {
		return err
	}
	defer reg.stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	fmt.Printf("seed: %d envs x %d instances x %d methods per instance; servers on core %d, wrk on core %d; %d rounds of %s per server, target and connection count\n\n",
		envs, appsPerEnv*instancesPerApp, methodsPerApp, l.serverCPU, l.clientCPU, l.rounds, l.round)
	fmt.Println("| target | body bytes | connections | registry req/s | bare req/s | ratio (median) | ratio (range) | CPU ratio (median) | CPU ratio (range) | replayed |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, tg := range targets {
		capture := filepath.Join(dir, "capture.json")
		size, err := captureAnswer(reg.base+tg.path, capture)
		if err != nil {
			return err
		}
		bareAddr, err := freeAddr()
		if err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		argv := l.pinned(l.serverCPU, self)
		bareCmd := exec.CommandContext(ctx, argv[0], append(argv[1:], "-bare", capture)...)
		bareCmd.Env = append(os.Environ(), "BARE_ADDR="+bareAddr)
		bareCmd.Stderr = os.Stderr
		if err := bareCmd.Start(); err != nil {
			return err
		}
		err = waitReady("http://" + bareAddr + "/")
		servers := [2]server{{url: reg.base + tg.path, pid: reg.cmd.Process.Pid}, {url: "http://" + bareAddr + tg.path, pid: bareCmd.Process.Pid}}
		for _, c := range l.conns {
			if err != nil {
				break
			}
			var ratios, cpuRatios, regs, bares []float64
			// The share of the registry's requests answered from a kept
			// answer (answers.go), over the rounds and their warm-up.
			var answered float64
			replayedBefore, rerr := replayedCount(reg.base)
			if rerr != nil {
				err = rerr
				break
			}
			// A short warm-up of each, unmeasured: the first round would
			// otherwise pay for connections, page faults and the heap's growth.
			for k, sv := range servers {
				if err == nil {
					var warm roundResult
					warm, err = l.measure(sv, servers, c, time.Second)
					if k == 0 {
						answered += warm.requests
					}
				}
			}
			for i := 0; i < l.rounds && err == nil; i++ {
				// Alternating which goes first cancels a drift of the
				// machine's speed within a round.
				var got [2]roundResult
				for _, k := range [][2]int{{0, 1}, {1, 0}}[i%2] {
					if err == nil {
						got[k], err = l.measure(servers[k], servers, c, l.round)
					}
				}
				if err != nil {
					break
				}
				reg, bare := got[0], got[1]
				answered += reg.requests
				regs, bares, ratios = append(regs, reg.rate), append(bares, bare.rate), append(ratios, reg.rate/bare.rate)
				// The registry's own work between requests (the poller, the
				// seed refresh, its GC) is measured while the bare handler
				// is loaded, and taken out: on the shared core it slows both.
				regCPU := reg.cpu[0] - bare.cpu[0]*reg.elapsed.Seconds()/bare.elapsed.Seconds()
				cpuRatios = append(cpuRatios, (bare.cpu[1]/bare.requests)/(regCPU/reg.requests))
			}
			var replayedAfter float64
			if err == nil {
				replayedAfter, err = replayedCount(reg.base)
			}
			if err == nil {
				fmt.Printf("| %s | %d | %d | %.0f | %.0f | %.2f | %.2f–%.2f | %.2f | %.2f–%.2f | %.1f%% |\n", tg.name, size, c,
					median(regs), median(bares), median(ratios), slices.Min(ratios), slices.Max(ratios),
					median(cpuRatios), slices.Min(cpuRatios), slices.Max(cpuRatios), 100*(replayedAfter-replayedBefore)/answered)
			}
		}
		_ = bareCmd.Process.Kill()
		_ = bareCmd.Wait()
		if err != nil {
			return err
		}
	}
	return nil
}

// replayedCount reads registry_api_http_answers_replayed_total; a server
// that keeps no answers has none.
func replayedCount(base string) (float64, error) {
	raw, err := scrape(http.DefaultClient, base)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(raw) {
		if v, ok := strings.CutPrefix(line, "registry_api_http_answers_replayed_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, nil
}

// pinned is argv run on one core.
func (l loadRun) pinned(cpu int, argv ...string) []string {
	return append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
}

// server is one of the two servers a target is measured on.
type server struct {
	url string
	pid int
}

// roundResult is one round of load on one server.
type roundResult struct {
	rate, requests float64
	elapsed        time.Duration
	// cpu is the CPU time, in seconds, that each of the two servers used
	// during the round.
	cpu [2]float64
}

// measure loads sv for d and reads the CPU time both servers used meanwhile.
// The ratio of CPU time per request holds when other work on the machine
// takes the cores away, which the ratio of throughputs does not.
func (l loadRun) measure(sv server, servers [2]server, conns int, d time.Duration) (roundResult, error) {
	var res roundResult
	var before [2]float64
	for i, s := range servers {
		before[i] = cpuSeconds(s.pid)
	}
	start := time.Now()
	var err error
	res.rate, res.requests, err = l.wrk(sv.url, conns, d)
	res.elapsed = time.Since(start)
	for i, s := range servers {
		res.cpu[i] = cpuSeconds(s.pid) - before[i]
	}
	return res, err
}

// cpuSeconds is the CPU time a process's threads have run, from the
// scheduler's nanosecond counters; 0 if they cannot be read.
func cpuSeconds(pid int) float64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var ns float64
	for _, t := range tasks {
		raw, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended
		}
		if f := strings.Fields(string(raw)); len(f) > 0 {
			v, _ := strconv.ParseFloat(f[0], 64)
			ns += v
		}
	}
	return ns / 1e9
}

var (
	wrkRate     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	wrkErrors   = regexp.MustCompile(`(?m)^\s*Socket errors:.*`)
)

// wrk loads url with conns connections from one thread for d, and returns
// the requests answered per second and in all. Any answer other than a
// 2xx fails it: a fast error is not a fast read.
func (l loadRun) wrk(url string, conns int, d time.Duration) (rate, requests float64, err error) {
	argv := l.pinned(l.clientCPU, "wrk", "-t1", "-c"+strconv.Itoa(conns), "-d"+d.String(), url)
	var out bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out.String())
	}
	if m := wrkNon2xx.FindSubmatch(out.Bytes()); m != nil {
		return 0, 0, fmt.Errorf("%s: %s answers were not 2xx", url, m[1])
	}
	if m := wrkErrors.Find(out.Bytes()); m != nil {
		return 0, 0, fmt.Errorf("%s: %s", url, m)
	}
	m, n := wrkRate.FindSubmatch(out.Bytes()), wrkRequests.FindSubmatch(out.Bytes())
	if m == nil || n == nil {
		return 0, 0, fmt.Errorf("%s: no Requests/sec in wrk's output:\n%s", url, out.String())
	}
	rate, _ = strconv.ParseFloat(string(m[1]), 64)
	requests, _ = strconv.ParseFloat(string(n[1]), 64)
	return rate, requests, nil
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// registry is the real binary serving the load test's seed on loopback.
type registry struct {
	cmd  *exec.Cmd
	base string
	dir  string
}

// startRegistry writes the seed and starts bin serving it from the memory
// store, with env on top of the defaults, and waits until it is ready. Its
// standard output (the request log) is copied to out.
func startRegistry(bin string, out io.Writer, env ...string) (*registry, error) {
	return startRegistryCmd([]string{bin}, out, env...)
}

// startRegistryCmd is startRegistry with the command line that runs the
// binary, such as taskset's.
func startRegistryCmd(argv []string, out io.Writer, env ...string) (*registry, error) {
	dir, err := os.MkdirTemp("", "registry-seed")
	if err != nil {
		return nil, err
	}
	seed := filepath.Join(dir, "seed.yaml")
	if err := writeSeed(seed); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "REGISTRY_ADDR="+addr, "REGISTRY_STORE=memory", "REGISTRY_SEED="+seed,
		"REGISTRY_NAMESPACES=firefly"), env...)
	if out == io.Discard {
		// Written straight to the null device, the request log costs the
		// registry its write system calls, as a container runtime's
		// promptly drained pipe does; a pipe this tool drained would make
		// the registry wait for the tool's turn on its core.
		cmd.Stdout = nil
	} else {
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		go func() { _, _ = io.Copy(out, stdout) }()
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	r := &registry{cmd: cmd, base: "http://" + addr, dir: dir}
	if err := waitReady(r.base + "/readyz"); err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// stop ends the server as the kubelet would, and removes its seed.
func (r *registry) stop() {
	_ = r.cmd.Process.Signal(os.Interrupt)
	_ = r.cmd.Wait()
	os.RemoveAll(r.dir)
}

// writeSeed writes the load test's registry as ConfigMaps, as a seed file.
func writeSeed(path string) error {
	cms, err := seedConfigMaps()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, cm := range cms {
		doc, err := yaml.Marshal(cm)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(f, "---\n%s", doc); err != nil {
			return err
		}
	}
	return f.Close()
}

// seedConfigMaps is the load test's registry: one ConfigMap per env in
// namespace firefly, its entries' run_date now.
func seedConfigMaps() ([]corev1.ConfigMap, error) {
	now := model.FormatRunDate(time.Now(), nil)
	lease := int64(1795695862709570046)
	var cms []corev1.ConfigMap
	for e := range envs {
		env := fmt.Sprintf("env-%02d", e)
		cm := corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: model.ConfigMapName(env), Namespace: "firefly"}, Data: map[string]string{}}
		for a := range appsPerEnv {
			app := "app-" + strconv.Itoa(a)
			methods := map[string]bool{}
			for m := range methodsPerApp {
				methods[fmt.Sprintf("/acme.app%d.v1.Service/M%d", a, m)] = true
			}
			for i := range instancesPerApp {
				lease++
				raw, err := json.Marshal(model.ServiceNode{ProtoCount: 1, LeaseID: lease, RunDate: now, Methods: methods,
					Network: model.Network{SN: "net", Internal: fmt.Sprintf("%s.%s.svc.cluster.local:8080", app, env)},
					Kernel:  model.Kernel{Language: "Golang", Version: "v0.0.1"},
					Meta:    model.Meta{Env: env, AppID: app, Version: "v" + strconv.Itoa(1+i%2)}})
				if err != nil {
					return nil, err
				}
				cm.Data[model.CanonicalKey(app, lease)] = string(raw)
			}
		}
		cms = append(cms, cm)
	}
	return cms, nil
}

// captured is an answer the bare handler replays.
type captured struct {
	Header http.Header
	Body   []byte
}

func captureAnswer(url, path string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	h := resp.Header.Clone()
	// Content-Length stays: without it net/http sends a body over its
	// 2 KiB buffer chunked, which the registry, which sets it, does not.
	h.Del("Date")
	raw, err := json.Marshal(captured{Header: h, Body: body})
	if err != nil {
		return 0, err
	}
	return len(body), os.WriteFile(path, raw, 0o600)
}

// serveBare writes the captured answer, headers and body, to every request.
func serveBare(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c captured
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	return http.ListenAndServe(os.Getenv("BARE_ADDR"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		for k, v := range c.Header {
			h[k] = v
		}
		_, _ = w.Write(c.Body)
	}))
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitReady(url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New(url + " did not answer 200 within 60 s")
}
