// Command loadtest measures registry-api's read path against a bare net/http
// handler that writes the same bytes with the same headers, on loopback:
// a 50-env × 200-instance × 20-method seed, served by the real binary with
// its default configuration (request logging included), and the bare
// handler in a process of its own. Rounds alternate between the two so that
// both see the same machine. `make loadtest` runs it; results go in
// BENCHMARKS.md.
package main

import (
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
	"strconv"
	"sync"
	"sync/atomic"
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
	rounds := flag.Int("rounds", 3, "rounds per target and server (interleaved)")
	conns := flag.Int("c", 16, "concurrent keep-alive connections")
	bare := flag.String("bare", "", "internal: serve the captured answer in this file as the bare handler")
	followers := flag.Int("followers", 0, "instead: open this many event streams and as many blocked queries, and time registrations reaching them")
	hostile := flag.Duration("hostile", 0, "instead: send hostile requests of every kind for this long and report the server's peak memory")
	memLimit := flag.String("memlimit", "384MiB", "with -hostile: the server's GOMEMLIMIT (the deployment sets it to its memory limit)")
	stallers := flag.Int("stallers", 600, "with -hostile: connections that stall their bodies (more than REGISTRY_MAX_IN_FLIGHT)")
	flag.Parse()
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
	if err := run(*bin, *round, *rounds, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(bin string, round time.Duration, rounds, conns int) error {
	dir, err := os.MkdirTemp("", "registry-loadtest")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The default configuration logs every request as JSON to stdout; a
	// pipe that is read, as a container runtime's is.
	reg, err := startRegistry(bin, io.Discard, "REGISTRY_SEED_KEEPALIVE=true")
	if err != nil {
		return err
	}
	defer reg.stop()
	base := reg.base
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	targets := []struct{ name, path string }{
		{"resolution", "/v1/envs/env-07/methods/acme.app3.v1.Service/M5"},
		{"routes of one app", "/v1/envs/env-07/routes?app=app-3"},
		{"routes of an env (200 methods)", "/v1/envs/env-07/routes"},
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	fmt.Printf("seed: %d envs x %d instances x %d methods per instance; %d connections, %d rounds of %s per server and target\n\n",
		envs, appsPerEnv*instancesPerApp, methodsPerApp, conns, rounds, round)
	fmt.Printf("%-32s %14s %14s %8s %10s\n", "target", "registry req/s", "bare req/s", "ratio", "body bytes")
	for _, tg := range targets {
		capture := filepath.Join(dir, "capture.json")
		size, err := captureAnswer(client, base+tg.path, capture)
		if err != nil {
			return err
		}
		bareAddr, err := freeAddr()
		if err != nil {
			return err
		}
		self, _ := os.Executable()
		bareCmd := exec.CommandContext(ctx, self, "-bare", capture)
		bareCmd.Env = append(os.Environ(), "BARE_ADDR="+bareAddr)
		bareCmd.Stderr = os.Stderr
		if err := bareCmd.Start(); err != nil {
			return err
		}
		if err := waitReady("http://" + bareAddr + "/"); err != nil {
			return err
		}
		var regTotal, bareTotal float64
		for range rounds {
			regTotal += load(client, base+tg.path, round, conns)
			bareTotal += load(client, "http://"+bareAddr+tg.path, round, conns)
		}
		_ = bareCmd.Process.Kill()
		_ = bareCmd.Wait()
		r, b := regTotal/float64(rounds), bareTotal/float64(rounds)
		fmt.Printf("%-32s %14.0f %14.0f %8.2f %10d\n", tg.name, r, b, r/b, size)
	}
	return nil
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
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), "REGISTRY_ADDR="+addr, "REGISTRY_STORE=memory", "REGISTRY_SEED="+seed,
		"REGISTRY_NAMESPACES=firefly"), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { _, _ = io.Copy(out, stdout) }()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
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
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	now := model.FormatRunDate(time.Now(), nil)
	lease := int64(1795695862709570046)
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
					return err
				}
				cm.Data[model.CanonicalKey(app, lease)] = string(raw)
			}
		}
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

// captured is an answer the bare handler replays.
type captured struct {
	Header http.Header
	Body   []byte
}

func captureAnswer(c *http.Client, url, path string) (int, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	h.Del("Content-Length")
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

// load runs conns workers against url for d and returns requests per second.
func load(c *http.Client, url string, d time.Duration, conns int) float64 {
	var n atomic.Int64
	var failed atomic.Bool
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := c.Get(url)
				if err != nil {
					failed.Store(true)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Store(true)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		fmt.Fprintf(os.Stderr, "loadtest: requests to %s failed\n", url)
	}
	return float64(n.Load()) / d.Seconds()
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
