package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/acme/registry-api/internal/model"
)

const seedCM = `apiVersion: v1
kind: ConfigMap
metadata:
  name: ff-registry-prod
  namespace: firefly
data:
  user-service.1: '{"lease_id":1}'
`

const seedCM2 = `apiVersion: v1
kind: ConfigMap
metadata:
  name: ff-registry-staging
  namespace: shop
data:
  a.2: "x"
  b.3: "y"
`

// kubectl get cm -o yaml of a live object, server fields included.
const seedKubectlList = `apiVersion: v1
items:
- apiVersion: v1
  data:
    user-service.1: '{"lease_id":1}'
  kind: ConfigMap
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"v1","kind":"ConfigMap"}
    creationTimestamp: "2026-11-26T12:24:22Z"
    labels:
      app: registry
    name: ff-registry-prod
    namespace: firefly
    resourceVersion: "4711"
    uid: 0b6f3c1a-0000-4000-8000-000000000001
- apiVersion: v1
  binaryData:
    blob: aGk=
  kind: ConfigMap
  metadata:
    name: ff-registry-staging
    namespace: shop
kind: List
metadata:
  resourceVersion: ""
`

const seedJSON = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ff-registry-prod","namespace":"firefly"},"data":{"user-service.1":"{\"lease_id\":1}"}}`

const seedJSONList = `{
  "apiVersion": "v1",
  "kind": "List",
  "items": [
    {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ff-registry-prod","namespace":"firefly"},"data":{"user-service.1":"{\"lease_id\":1}"}},
    {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ff-registry-staging","namespace":"shop"},"data":{"a.2":"x","b.3":"y"}}
  ]
}`

func TestParseSeed(t *testing.T) {
	prod := "firefly/ff-registry-prod"
	staging := "shop/ff-registry-staging"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"one object", seedCM, []string{prod}},
		{"two documents", seedCM + "---\n" + seedCM2, []string{prod, staging}},
		{"leading and trailing separators", "---\n" + seedCM + "---\n" + seedCM2 + "---\n", []string{prod, staging}},
		{"empty documents", "---\n---\n" + seedCM + "---\n---\n\n---\n# nothing here\n---\n" + seedCM2 + "---\n---\n", []string{prod, staging}},
		{"order kept", seedCM2 + "---\n" + seedCM, []string{staging, prod}},
		{"v1 List from kubectl", seedKubectlList, []string{prod, staging}},
		{"ConfigMapList", strings.Replace(seedKubectlList, "kind: List", "kind: ConfigMapList", 1), []string{prod, staging}},
		{"empty List", "apiVersion: v1\nkind: List\nitems: []\n", nil},
		{"List and object", seedKubectlList + "---\n" + seedCM2, []string{prod, staging, staging}},
		{"JSON object", seedJSON, []string{prod}},
		{"JSON List", seedJSONList, []string{prod, staging}},
		{"JSON objects in a row", seedJSON + "\n" + seedJSON, []string{prod, prod}},
		{"empty", "", nil},
		{"only a separator", "---\n", nil},
		{"only white space", "  \n\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cms, err := ParseSeed([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := names(cms); !slices.Equal(got, tt.want) {
				t.Errorf("ConfigMaps %q, want %q", got, tt.want)
			}
			for _, cm := range cms {
				if cm.Kind != "ConfigMap" || cm.APIVersion != "v1" {
					t.Errorf("%s/%s: type meta %+v", cm.Namespace, cm.Name, cm.TypeMeta)
				}
			}
		})
	}

	cms, err := ParseSeed([]byte(seedKubectlList))
	if err != nil {
		t.Fatal(err)
	}
	if got := cms[0]; got.Data["user-service.1"] != `{"lease_id":1}` || got.Labels["app"] != "registry" || got.ResourceVersion != "4711" {
		t.Errorf("first item = %+v", got)
	}
	if got := string(cms[1].BinaryData["blob"]); got != "hi" {
		t.Errorf("binaryData = %q, want the decoded bytes", got)
	}
	// Seeded objects are accepted by the memory store.
	if _, err := NewMemory(cms...); err != nil {
		t.Errorf("NewMemory(seed): %v", err)
	}
}

// The fixture holds exactly what the Go library writes; every value must
// read back as a valid entry under its canonical key.
func TestLoadSeedFileFixture(t *testing.T) {
	cms, err := LoadSeedFile(filepath.Join("testdata", "configmaps-go-micro.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(cms), []string{"firefly/ff-registry-prod", "firefly/ff-registry-staging"}; !slices.Equal(got, want) {
		t.Fatalf("ConfigMaps %q, want %q", got, want)
	}
	wantKeys := [][]string{
		{"order-service.1795695862716099677", "user-service.1795695862709570046", "user-service.1795695862712874049"},
		{"user-service.1795695862719322195"},
	}
	for i, cm := range cms {
		env, ok := model.EnvFromConfigMapName(cm.Name)
		if !ok {
			t.Fatalf("%s is not a registry ConfigMap", cm.Name)
		}
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range cm.Data {
				if !yield(k) {
					return
				}
			}
		})
		if !slices.Equal(keys, wantKeys[i]) {
			t.Errorf("%s: keys %q, want %q", cm.Name, keys, wantKeys[i])
		}
		for key, value := range cm.Data {
			node, warnings, err := model.ParseEntry(cm.Namespace, env, key, []byte(value), model.ParseOptions{})
			if err != nil || len(warnings) > 0 {
				t.Errorf("%s %s: %v %q", cm.Name, key, err, warnings)
				continue
			}
			if got := model.FormatRunDate(node.RunDate, nil); got != "2026-11-26 12:24:22" {
				t.Errorf("%s %s: run_date %s", cm.Name, key, got)
			}
		}
	}
	m, err := NewMemory(cms...)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m.List(t.Context(), "firefly"); len(got.Items) != 2 {
		t.Errorf("memory store holds %d ConfigMaps", len(got.Items))
	}
}

func TestParseSeedErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // all must appear in the error
	}{
		{"bad YAML in document 2", seedCM + "---\nkind: [\n", []string{"document 2: ", "yaml"}},
		{"bad YAML in document 1", "data: {\n", []string{"document 1: ", "yaml"}},
		{"tab indentation", seedCM + "---\n\tkind: x\n", []string{"document 2: ", "yaml"}},
		{"bad JSON in document 2", seedJSON + "\n{bad", []string{"document 2: ", "invalid character"}},
		{"leading separator does not count", "---\n" + seedCM + "---\nkind: Secret\n", []string{"document 2: kind Secret: want ConfigMap, List, EndpointSlice or Pod"}},
		// Empty documents are not counted, however they are written.
		{"after an empty document", seedCM + "---\n---\nkind: Secret\n", []string{"document 2: kind Secret"}},
		{"after a blank document", seedCM + "---\n\n---\nkind: Secret\n", []string{"document 2: kind Secret"}},
		{"after a comment-only document", seedCM + "---\n# c\n---\nkind: Secret\n", []string{"document 2: kind Secret"}},
		{"after a null document", seedCM + "---\nnull\n---\n" + seedCM2 + "---\nkind: Secret\n", []string{"document 3: kind Secret"}},
		{"wrong kind", strings.Replace(seedCM, "kind: ConfigMap", "kind: Secret", 1), []string{"document 1: kind Secret: want ConfigMap, List, EndpointSlice or Pod"}},
		{"no kind", strings.Replace(seedCM, "kind: ConfigMap\n", "", 1), []string{"document 1: no kind: want ConfigMap, List, EndpointSlice or Pod"}},
		{"wrong apiVersion", strings.Replace(seedCM, "apiVersion: v1", "apiVersion: v2", 1), []string{"document 1: ", `apiVersion "v2": want v1`}},
		{"missing namespace", strings.Replace(seedCM, "  namespace: firefly\n", "", 1), []string{"document 1: ", `configmap "ff-registry-prod" has no metadata.namespace`}},
		{"missing name", strings.Replace(seedCM, "  name: ff-registry-prod\n", "", 1), []string{"document 1: ", "configmap has no metadata.name"}},
		{"unknown field", seedCM + "datas:\n  k: v\n", []string{"document 1: ", `unknown field "datas"`}},
		{"unknown metadata field", strings.Replace(seedCM, "metadata:\n", "metadata:\n  nmae: x\n", 1), []string{"document 1: ", `unknown field "nmae"`}},
		{"data value not a string", seedCM + "  n.1: [1]\n", []string{"document 1: ", "ConfigMap.data"}},
		{"not an object", seedCM + "---\n- a\n", []string{"document 2: ", "not an object"}},
		{"scalar", "42\n", []string{"document 1: ", "not an object"}},
		{"List item of another kind", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s, namespace: firefly}\n", []string{"document 1: item 0: ", `kind "Secret": want ConfigMap`}},
		{"List item without namespace", "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(strings.Replace(seedCM, "  namespace: firefly\n", "", 1), "\n", "\n  "), []string{"document 1: item 0: ", "has no metadata.namespace"}},
		{"second List item bad", strings.Replace(seedKubectlList, "  binaryData:\n", "  bogus: 1\n  binaryData:\n", 1), []string{"document 1: item 1: ", `unknown field "bogus"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cms, err := ParseSeed([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseSeed = %q, want an error", names(cms))
			}
			if cms != nil {
				t.Errorf("ConfigMaps %q returned with the error", names(cms))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadSeedFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad-seed.yaml")
	if err := os.WriteFile(bad, []byte(seedCM+"---\nkind: Secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadSeedFile(bad)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "document 2: kind Secret") {
		t.Errorf("LoadSeedFile(bad) = %v, want the file name and the document", err)
	}

	missing := filepath.Join(dir, "missing.yaml")
	_, err = LoadSeedFile(missing)
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadSeedFile(missing) = %v, want a not-exist error naming the file", err)
	}

	good := filepath.Join(dir, "seed.json")
	if err := os.WriteFile(good, []byte(seedJSONList), 0o600); err != nil {
		t.Fatal(err)
	}
	cms, err := LoadSeedFile(good)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ParseSeed([]byte(seedJSONList))
	if !reflect.DeepEqual(cms, want) {
		t.Errorf("LoadSeedFile = %+v, want %+v", cms, want)
	}
}
