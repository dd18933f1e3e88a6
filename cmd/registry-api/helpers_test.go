package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Helpers of the end-to-end tests, with and without the real API server.

// httpClient bounds every request so that a wedged server fails the test
// instead of hanging it.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// fetch GETs base+path and returns the status, headers and body.
func fetch(t *testing.T, base, path string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := httpClient.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp.StatusCode, resp.Header, body
}

// metricValue scrapes /metrics and sums the samples of name whose labels
// contain every one of labels (each written name="value"). found is false
// when no sample matched.
func metricValue(t *testing.T, base, name string, labels ...string) (sum float64, found bool) {
	t.Helper()
	status, _, body := fetch(t, base, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d: %s", status, body)
	}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		var series, value string
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, value = line[:i+1], line[i+1:]
		} else {
			series, value, _ = strings.Cut(line, " ")
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		metric, labelSet, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		if !containsAll(labelSet, labels) {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	return sum, found
}

func containsAll(labelSet string, labels []string) bool {
	for _, l := range labels {
		if !strings.Contains(labelSet, l) {
			return false
		}
	}
	return true
}

func mustMetric(t *testing.T, base, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metricValue(t, base, name, labels...)
	if !ok {
		t.Fatalf("/metrics has no %s%v", name, labels)
	}
	return v
}

// configFrom reads the configuration from a process environment that holds
// the given name, value pairs and no other REGISTRY_ variable; the test's
// end restores the environment (t.Setenv).
func configFrom(t *testing.T, kv ...string) (Config, error) {
	t.Helper()
	for _, v := range configVars() {
		if _, ok := os.LookupEnv(v.key); ok {
			t.Setenv(v.key, "")
			if err := os.Unsetenv(v.key); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(kv[i], kv[i+1])
	}
	s, err := loadConfig(os.Getenv)
	return s.Config, err
}

// startMakeRun serves what `make run` starts (the memory store, the demo
// seed kept alive; everything else at its default) on a free port, ready,
// and returns its base URL.
func startMakeRun(t *testing.T, logs io.Writer) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configFrom(t,
		"REGISTRY_ADDR", "127.0.0.1:0",
		"REGISTRY_STORE", "memory",
		"REGISTRY_SEED", filepath.Join(root, "demo", "seed.yaml"),
		"REGISTRY_SEED_KEEPALIVE", "true",
	)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := startServe(t, cfg, logs)
	waitReady(t, base)
	return base
}

// serveConfig derives the settings of cfg with getenv, as run does, and serves it.
func serveConfig(ctx context.Context, cfg Config, getenv func(string) string, stdout io.Writer) error {
	s, err := cfg.derive(getenv)
	if err != nil {
		return err
	}
	return serve(ctx, s, stdout)
}

// validate derives the settings of c in a process environment without the pod's variables.
func (c Config) validate() error {
	_, err := c.derive(envOf())
	return err
}

// envOf is a getenv that answers the given name, value pairs and nothing else.
func envOf(kv ...string) func(string) string {
	vars := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		vars[kv[i]] = kv[i+1]
	}
	return func(k string) string { return vars[k] }
}
