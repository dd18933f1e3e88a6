package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigReadsOnlyREGISTRYNames(t *testing.T) {
	cfg, err := configFrom(t,
		"TTL", "1s", // bare names, envconfig's fallback, are not read
		"GC_AFTER", "1m",
		"REGISTRY_POLL_INTERVAL", "500ms",
	)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TTL != 10*time.Second || cfg.GCAfter != 15*time.Minute {
		t.Errorf("TTL %s, GC after %s: read from names outside REGISTRY_", cfg.TTL, cfg.GCAfter)
	}
	if cfg.LogLevel != "info" || cfg.PollInterval != 500*time.Millisecond {
		t.Errorf("log level %q, poll interval %s; want info, 500ms", cfg.LogLevel, cfg.PollInterval)
	}
}

func TestLoadConfigNamesTheBadVariable(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"REGISTRY_TTL", "ten seconds", "want a duration with its unit"},
		{"REGISTRY_TTL", "10", "want a duration with its unit"},
		{"REGISTRY_READ_ONLY", "maybe", "want true or false"},
		{"REGISTRY_SEED_KEEPALIVE", "yes", "want true or false"},
		{"REGISTRY_MAX_IN_FLIGHT", "many", "want a whole number"},
		{"REGISTRY_MAX_BODY_BYTES", "1e9", "want a whole number"},
		{"REGISTRY_ADDR", ":99999", `port "99999"`},
		{"REGISTRY_ADDR", "8080", "want [host]:port"},
		{"REGISTRY_ADDR", ":http", `port "http"`},
		{"REGISTRY_ADDR", "localhost:", `port ""`},
		{"REGISTRY_NAMESPACES", "Fire_Fly", `"Fire_Fly" is not a namespace name`},
		{"REGISTRY_NAMESPACES", "firefly,shop.eu", `"shop.eu" is not a namespace name`},
		{"REGISTRY_TOKEN_AUDIENCES", "registry-api,", "none of them empty"},
	} {
		_, err := configFrom(t, tc.name, tc.value)
		if err == nil || !strings.Contains(err.Error(), tc.name+"=") && !strings.Contains(err.Error(), tc.name+":") ||
			!strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v; want an error naming the variable that says %q", tc.name, tc.value, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "strconv") {
			t.Errorf("%s=%q: %v speaks of the parser, not of the variable", tc.name, tc.value, err)
		}
	}
	for _, addr := range []string{":8080", "127.0.0.1:0", "[::1]:8080", "localhost:65535"} {
		if _, err := configFrom(t, "REGISTRY_ADDR", addr); err != nil {
			t.Errorf("REGISTRY_ADDR=%q: %v", addr, err)
		}
	}
}

func TestKubeconfigFallsBackToKUBECONFIG(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	kubeconfig := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://plain-kubeconfig.example:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	// Inside a pod, a KUBECONFIG still wins over the in-cluster config.
	c, err := kubeConfig(settings{proc: readProcessEnv(envOf("KUBECONFIG", path, "KUBERNETES_SERVICE_HOST", "10.0.0.1", "HOME", dir))})
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "https://plain-kubeconfig.example:6443" {
		t.Errorf("host %q: KUBECONFIG was not read", c.Host)
	}
}

// TestREADMEConfigTableIsComplete checks that the README's configuration
// table lists every variable the binary reads, and only those, with the
// binary's defaults.
func TestREADMEConfigTableIsComplete(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(REGISTRY_[A-Z_]+)`[^|]*\\|([^|]*)\\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = strings.TrimSpace(m[2])
	}
	for _, v := range configVars() {
		got, ok := documented[v.key]
		if !ok {
			t.Errorf("README's configuration table lacks %s", v.key)
			continue
		}
		delete(documented, v.key)
		if v.def != "" && !strings.HasPrefix(got, "`"+v.def+"`") {
			t.Errorf("README gives %s the default %q; the binary's is %q", v.key, got, v.def)
		}
	}
	for name := range documented {
		t.Errorf("README's configuration table lists %s, which the binary does not read", name)
	}
}

// TestEveryConfigFieldIsAVariable guards against a field that no REGISTRY_
// variable sets: without an envconfig tag the library would read the
// field's bare name.
func TestEveryConfigFieldIsAVariable(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !strings.HasPrefix(f.Tag.Get("envconfig"), "REGISTRY_") && f.Tag.Get("ignored") != "true" {
			t.Errorf("Config.%s has no envconfig:\"REGISTRY_…\" tag (ignored:\"true\" for one set in code)", f.Name)
		}
	}
	if n := len(configVars()); n != typ.NumField()-1 {
		t.Errorf("%d variables for %d fields; only OnListen is set in code", n, typ.NumField())
	}
}

// TestEveryVariableRefusesABadValue sets each variable that takes a number,
// a duration, a switch or one of a few words to a value it cannot take, and
// wants an error that names the variable. A string variable is listed here
// with a bad value or with why it takes any text, so a new one is decided
// on when it is added.
func TestEveryVariableRefusesABadValue(t *testing.T) {
	badText := map[string]string{
		"REGISTRY_ADDR":                 ":99999",
		"REGISTRY_STORE":                "disk",
		"REGISTRY_SEED":                 "seed.yaml", // with the kube store
		"REGISTRY_RUN_DATE_ZONE":        "Mars/Olympus",
		"REGISTRY_LOG_LEVEL":            "trace",
		"REGISTRY_LOG_FORMAT":           "xml",
		"REGISTRY_WRITE_NAMESPACE":      "Fire_Fly",
		"REGISTRY_AUTH":                 "basic",
		"REGISTRY_LEASE_NAME":           "Registry API",
		"REGISTRY_LEASE_NAMESPACE":      "Fire_Fly",
		"REGISTRY_GATEWAY":              "gateway",
		"REGISTRY_ISTIO_VERSION_HEADER": "X-Version",
	}
	anyText := map[string]string{
		"REGISTRY_KUBECONFIG":      "a path, read when the kube store connects",
		"REGISTRY_NAMESPACES":      "a list, checked by TestLoadConfigNamesTheBadVariable",
		"REGISTRY_TOKEN_AUDIENCES": "a list, checked by TestLoadConfigNamesTheBadVariable",
		"REGISTRY_ADMIN_SUBJECTS":  "a list of names, any of which may exist",
	}
	typ := reflect.TypeFor[Config]()
	for _, v := range configVars() {
		f, _ := typ.FieldByName(v.field)
		var bad []string
		switch f.Type {
		case reflect.TypeFor[bool]():
			bad = []string{"maybe", ""}
		case reflect.TypeFor[time.Duration]():
			bad = []string{"10", "-1s"}
		case reflect.TypeFor[int](), reflect.TypeFor[int64]():
			bad = []string{"1.5", "-1"}
		default:
			if value, ok := badText[v.key]; ok {
				bad = []string{value}
			} else if _, ok := anyText[v.key]; !ok {
				t.Errorf("%s (%s): give it a bad value to refuse here, or say why it takes any text", v.key, f.Type)
			}
		}
		named := regexp.MustCompile(`\b` + v.key + `\b`)
		for _, value := range bad {
			_, err := configFrom(t, v.key, value)
			if err == nil || !named.MatchString(err.Error()) {
				t.Errorf("%s=%q: %v; want an error that names %s", v.key, value, err, v.key)
			}
		}
		// Where 0 is taken, the error for a negative number does not
		// say that 0 is refused.
		if len(bad) == 2 && strings.HasPrefix(bad[1], "-") {
			zero := "0"
			if f.Type == reflect.TypeFor[time.Duration]() {
				zero = "0s"
			}
			if _, err := configFrom(t, v.key, zero); err == nil {
				_, err := configFrom(t, v.key, bad[1])
				if err != nil && regexp.MustCompile(`must be positive|at least|from 1`).MatchString(err.Error()) {
					t.Errorf("%s=%s is taken, but %s=%s answers %q", v.key, zero, v.key, bad[1], err)
				}
			}
		}
	}
}
