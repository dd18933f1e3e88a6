package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// TestDeployGOMEMLIMITIsBelowTheMemoryLimit reads deploy/deployment.yaml
// and holds each container's GOMEMLIMIT below its memory limit, with room
// for what the Go runtime does not count (stacks of the OS, the binary's
// pages): at the limit itself the collector would start working only when
// the kernel is about to kill the pod.
func TestDeployGOMEMLIMITIsBelowTheMemoryLimit(t *testing.T) {
	t.Parallel()
	f, err := os.Open(filepath.Join("..", "..", "deploy", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var dep appsv1.Deployment
	if err := yaml.NewYAMLOrJSONDecoder(f, 4096).Decode(&dep); err != nil {
		t.Fatal(err)
	}
	containers := dep.Spec.Template.Spec.Containers
	if len(containers) == 0 {
		t.Fatal("deploy/deployment.yaml has no container")
	}
	for _, c := range containers {
		limit, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			t.Errorf("container %s has no memory limit", c.Name)
			continue
		}
		var value string
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" {
				value = e.Value
			}
		}
		if value == "" {
			t.Errorf("container %s sets no GOMEMLIMIT: the collector would let the heap grow to the memory limit", c.Name)
			continue
		}
		soft, err := parseGOMEMLIMIT(value)
		if err != nil {
			t.Errorf("container %s: GOMEMLIMIT=%q: %v", c.Name, value, err)
			continue
		}
		// About 85% is what the manifest's comment asks for; more than 90%
		// leaves too little for memory outside the heap.
		if hard := limit.Value(); soft*10 > hard*9 {
			t.Errorf("container %s: GOMEMLIMIT=%s is %d bytes, more than 90%% of the memory limit %s (%d bytes)", c.Name, value, soft, limit.String(), hard)
		}
	}
}

var goMemLimit = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

// parseGOMEMLIMIT reads a GOMEMLIMIT value as the runtime does: a whole
// number of bytes with an optional binary unit.
func parseGOMEMLIMIT(s string) (int64, error) {
	m := goMemLimit.FindStringSubmatch(s)
	if m == nil {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	if n > (1<<63-1)>>shift {
		return 0, strconv.ErrRange
	}
	return n << shift, nil
}
