package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMakeImage runs `make image` with stand-ins for docker, podman and
// buildah on PATH: it builds the Dockerfile with the first of them found, or
// the one CONTAINER_TOOL names, passing VERSION and REVISION as the
// Dockerfile's build arguments, and says what is missing when none is there.
func TestMakeImage(t *testing.T) {
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	const args = "build -f Dockerfile --build-arg VERSION=v9.9.9 --build-arg REVISION=0123abc -t registry-api:v9.9.9 ."
	for _, tc := range []struct {
		name      string
		installed []string
		vars      []string
		want      string // the one call recorded; empty when make must fail
	}{
		{"docker first", []string{"docker", "podman", "buildah"}, nil, "docker " + args},
		{"podman without docker", []string{"podman", "buildah"}, nil, "podman " + args},
		{"buildah alone", []string{"buildah"}, nil, "buildah " + args},
		{"CONTAINER_TOOL chooses", []string{"docker", "podman", "buildah"}, []string{"CONTAINER_TOOL=buildah"}, "buildah " + args},
		{"IMAGE names the image", []string{"podman"}, []string{"IMAGE=registry.example.com/registry-api:v9.9.9"},
			"podman " + strings.Replace(args, "registry-api:v9.9.9", "registry.example.com/registry-api:v9.9.9", 1)},
		{"none installed", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			calls := filepath.Join(dir, "calls")
			for _, tool := range tc.installed {
				script := "#!/bin/sh\necho " + tool + ` "$@" >>` + calls + "\n"
				if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(makeBin, append([]string{"--no-print-directory", "image", "VERSION=v9.9.9", "REVISION=0123abc"}, tc.vars...)...)
			cmd.Dir = root
			// The stand-ins alone: whatever this machine has installed plays
			// no part.
			cmd.Env = []string{"PATH=" + dir}
			out, err := cmd.CombinedOutput()
			recorded, _ := os.ReadFile(calls)
			if tc.want == "" {
				if err == nil || !strings.Contains(string(out), "none of docker, podman or buildah is on PATH") {
					t.Errorf("make image with none installed: %v\n%s", err, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("make image: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(recorded)); got != tc.want {
				t.Errorf("make image ran\n  %s\nwant\n  %s", got, tc.want)
			}
		})
	}
}
