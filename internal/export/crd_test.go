package export

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// moduleDir is where the go command keeps module's source, the version
// go.mod requires: its CRDs are read from there rather than copied here.
func moduleDir(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	return strings.TrimSpace(string(out))
}

// schema is the part of a CRD's OpenAPI schema the limits are read from.
type schema struct {
	Properties   map[string]schema `json:"properties"`
	Items        *schema           `json:"items"`
	MaxItems     *int64            `json:"maxItems"`
	MaxLength    *int64            `json:"maxLength"`
	XValidations []struct {
		Rule    string `json:"rule"`
		Message string `json:"message"`
	} `json:"x-kubernetes-validations"`
}

type crd struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Versions []struct {
			Name   string `json:"name"`
			Schema struct {
				OpenAPIV3Schema schema `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

func readCRD(t *testing.T, path string) *crd {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c crd
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &c
}

func v1Schema(t *testing.T, c *crd) schema {
	t.Helper()
	for _, v := range c.Spec.Versions {
		if v.Name == "v1" {
			return v.Schema.OpenAPIV3Schema.Properties["spec"]
		}
	}
	t.Fatalf("%s serves no v1", c.Metadata.Name)
	return schema{}
}

// TestLimitsMatchCRD checks the splitting limits against the CRDs of the
// gateway-api module version go.mod names.
func TestLimitsMatchCRD(t *testing.T) {
	dir := filepath.Join(moduleDir(t, "sigs.k8s.io/gateway-api"), "config", "crd", "standard")
	routes := v1Schema(t, readCRD(t, filepath.Join(dir, "gateway.networking.k8s.io_grpcroutes.yaml")))
	rules := routes.Properties["rules"]
	matches := rules.Items.Properties["matches"]
	// The cap across rules is a CEL rule: "... <= 128".
	total := -1
	for _, v := range rules.XValidations {
		if m := regexp.MustCompile(`matches\.size\(\)[\s\S]*<= (\d+)\s*$`).FindStringSubmatch(v.Rule); m != nil {
			total, _ = strconv.Atoi(m[1])
		}
	}
	grants := v1Schema(t, readCRD(t, filepath.Join(dir, "gateway.networking.k8s.io_referencegrants.yaml")))
	method := matches.Items.Properties["method"]

	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"spec.rules maxItems", deref(rules.MaxItems), MaxRulesPerRoute},
		{"spec.rules[].matches maxItems", deref(matches.MaxItems), MaxMatchesPerRule},
		{"matches across rules (CEL)", int64(total), MaxMatchesPerRoute},
		{"ReferenceGrant spec.to maxItems", deref(grants.Properties["to"].MaxItems), MaxGrantTargets},
		{"match service maxLength", deref(method.Properties["service"].MaxLength), maxMatchValue},
		{"match method maxLength", deref(method.Properties["method"].MaxLength), maxMatchValue},
	} {
		if c.got != c.want {
			t.Errorf("%s: CRD says %d, the package %d", c.name, c.got, c.want)
		}
	}
	// The method match's patterns are the package's.
	for _, v := range method.XValidations {
		for _, re := range []string{grpcService.String(), grpcMethod.String()} {
			if strings.Contains(v.Message, "service must") && strings.HasPrefix(re, "^(?i)") && !strings.Contains(v.Rule, re) {
				t.Errorf("CRD service rule %q lacks %q", v.Rule, re)
			}
			if strings.Contains(v.Message, "method must") && !strings.HasPrefix(re, "^(?i)") && !strings.Contains(v.Rule, re) {
				t.Errorf("CRD method rule %q lacks %q", v.Rule, re)
			}
		}
	}
}

func deref(p *int64) int64 {
	if p == nil {
		return -1
	}
	return *p
}
