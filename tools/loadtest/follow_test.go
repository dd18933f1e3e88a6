package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestDeploymentMemLimitIsTheDeployments holds the GOMEMLIMIT the load
// tests run the server at to the one deploy/deployment.yaml sets, so that
// their memory figures stay those of a deployed replica.
func TestDeploymentMemLimitIsTheDeployments(t *testing.T) {
	manifest, err := os.ReadFile(filepath.Join("..", "..", "deploy", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*- name: GOMEMLIMIT\s*\n\s*value: "?([^"\s]+)"?\s*$`).FindSubmatch(manifest)
	if m == nil {
		t.Fatal("deploy/deployment.yaml sets no GOMEMLIMIT")
	}
	if got := string(m[1]); got != deploymentMemLimit {
		t.Errorf("deploy/deployment.yaml sets GOMEMLIMIT=%s; the load tests run at %s", got, deploymentMemLimit)
	}
}
