package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDockerfile checks that the Dockerfile builds with `make build` only,
// on base images that every builder resolves alike, runs as non-root on
// distroless, and labels the image with where it comes from, its version and
// its commit, taken from build arguments.
func TestDockerfile(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a runtime stage", len(stages))
	}
	var names []string
	for _, st := range stages {
		// FROM an earlier stage, or FROM scratch, pulls nothing.
		if !slices.Contains(names, st.image) && st.image != "scratch" {
			if err := checkBaseImage(st.image); err != nil {
				t.Errorf("FROM %s: %v", st.image, err)
			}
		}
		names = append(names, st.name)
	}
	runtime := stages[len(stages)-1]
	var build *dockerStage
	for _, line := range runtime.lines {
		if from, ok := strings.CutPrefix(line.args, "--from="); ok && line.cmd == "COPY" {
			name, _, _ := strings.Cut(from, " ")
			for i := range stages {
				if stages[i].name == name {
					build = &stages[i]
				}
			}
		}
	}
	if build == nil {
		t.Fatal("the runtime stage copies from no named build stage")
	}
	makeBuild := regexp.MustCompile(`^make build( [A-Z_]+=\S+)*$`)
	var makes int
	for _, line := range build.lines {
		if line.cmd != "RUN" {
			continue
		}
		if makeBuild.MatchString(line.args) {
			makes++
		}
		if strings.Contains(line.args, "go build") {
			t.Errorf("build stage runs %q: it must build with `make build` only", line.args)
		}
	}
	if makes != 1 {
		t.Errorf("build stage has %d `RUN make build` lines, want 1", makes)
	}

	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot@`).MatchString(runtime.image) {
		t.Errorf("runtime image %s, want gcr.io/distroless/static…:nonroot@sha256:…", runtime.image)
	}
	// The build stage's Go is the one go.mod names: the image sets
	// GOTOOLCHAIN=local, so an older one would refuse to build.
	goVersion := goModVersion(t, filepath.Join(root, "go.mod"))
	if want := "docker.io/library/golang:" + goVersion + "-"; !strings.HasPrefix(build.image, want) {
		t.Errorf("build image %s, want %s… (go.mod says go %s)", build.image, want, goVersion)
	}
	users := runtime.args("USER")
	if len(users) != 1 {
		t.Fatalf("runtime stage USER lines = %q, want one", users)
	}
	if user, _, _ := strings.Cut(users[0], ":"); user == "" || user == "0" || user == "root" {
		t.Errorf("runtime USER %s is root", users[0])
	}
	if exposes := runtime.args("EXPOSE"); !slices.Contains(exposes, "8080") {
		t.Errorf("runtime EXPOSE = %q, want 8080", exposes)
	}

	labels := runtime.labels()
	if got := labels["org.opencontainers.image.source"]; got != "https://github.com/acme/registry-api" {
		t.Errorf("label org.opencontainers.image.source = %q, want the repository's URL", got)
	}
	for label, arg := range map[string]string{"org.opencontainers.image.version": "VERSION", "org.opencontainers.image.revision": "REVISION"} {
		if got := labels[label]; got != "${"+arg+"}" && got != "$"+arg {
			t.Errorf("label %s = %q, want it from the build argument %s", label, got, arg)
		}
		if !slices.Contains(runtime.argNames(), arg) {
			t.Errorf("the runtime stage does not declare ARG %s, so label %s would be empty", arg, label)
		}
	}
	// make build stamps the binary with the same VERSION the label shows.
	if !slices.Contains(build.argNames(), "VERSION") {
		t.Error("the build stage does not declare ARG VERSION: the binary would not report the image's version")
	}
}

// makeBuild runs `make build`, the Dockerfile's build step, with VERSION
// version and the binary written to bin.
func makeBuild(t *testing.T, version, bin string) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "build", "VERSION="+version, "BIN="+bin)
	cmd.Dir = root
	began := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	t.Logf("make build took %v", time.Since(began).Round(time.Millisecond))
}

// imageRef is registry/repository:tag@sha256:digest, the registry a host
// name (with a dot or a port) or localhost.
var imageRef = regexp.MustCompile(`^((?:[a-z0-9-]+\.)+[a-z0-9-]+(?::\d+)?|localhost(?::\d+)?)/([a-z0-9._/-]+):([\w][\w.-]*)@sha256:([0-9a-f]{64})$`)

// checkBaseImage says what a base image reference lacks for podman and
// buildah to pull the same image docker does: a registry (they have no
// default one to complete a short name), a tag for the reader and the digest
// that decides.
func checkBaseImage(ref string) error {
	if imageRef.MatchString(ref) {
		return nil
	}
	name, digest, pinned := strings.Cut(ref, "@")
	first, _, _ := strings.Cut(name, "/")
	switch {
	case !strings.Contains(name, "/") || !strings.ContainsAny(first, ".:") && first != "localhost":
		return fmt.Errorf("not fully qualified: name its registry, as in docker.io/library/%s", name)
	case !pinned || !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest):
		return fmt.Errorf("not pinned by digest: add @sha256:<digest of the tag's index>")
	default:
		return fmt.Errorf("want registry/repository:tag@sha256:<digest>, the tag kept for the reader")
	}
}

// goModVersion is the go directive of a go.mod file.
func goModVersion(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s has no go directive", path)
	}
	return string(m[1])
}

type dockerLine struct{ cmd, args string }

type dockerStage struct {
	image, name string
	lines       []dockerLine
}

func (s *dockerStage) args(cmd string) []string {
	var out []string
	for _, l := range s.lines {
		if l.cmd == cmd {
			out = append(out, strings.Fields(l.args)...)
		}
	}
	return out
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining
// continued lines and dropping comments.
func parseDockerfile(t *testing.T, path string) []dockerStage {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		stages  []dockerStage
		pending string
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && pending == "") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += strings.TrimSpace(cont) + " "
			continue
		}
		line, pending = strings.TrimSpace(pending+line), ""
		cmd, args, _ := strings.Cut(line, " ")
		cmd, args = strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")
		if cmd == "FROM" {
			f := strings.Fields(args)
			st := dockerStage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if cmd != "ARG" {
				t.Fatalf("%s: %s before the first FROM", path, cmd)
			}
			continue
		}
		stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, dockerLine{cmd, args})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// argNames lists the build arguments a stage declares.
func (s *dockerStage) argNames() []string {
	var out []string
	for _, a := range s.args("ARG") {
		name, _, _ := strings.Cut(a, "=")
		out = append(out, name)
	}
	return out
}

var dockerLabel = regexp.MustCompile(`([A-Za-z0-9._-]+)=("(?:[^"\\]|\\.)*"|\S+)`)

// labels returns a stage's LABEL keys and values, unquoted.
func (s *dockerStage) labels() map[string]string {
	out := map[string]string{}
	for _, l := range s.lines {
		if l.cmd != "LABEL" {
			continue
		}
		for _, m := range dockerLabel.FindAllStringSubmatch(l.args, -1) {
			out[m[1]] = strings.Trim(m[2], `"`)
		}
	}
	return out
}

// TestCheckBaseImage covers the references a builder without Docker's
// default registry cannot resolve, or resolves to a moving target.
func TestCheckBaseImage(t *testing.T) {
	const digest = "@sha256:f5b485ea962d9bd1186b2f6b3a061191539b905b82ec395de78cbfae51f20e35"
	for ref, ok := range map[string]bool{
		"docker.io/library/golang:1.26.8-bookworm" + digest:        true,
		"gcr.io/distroless/static-debian12:nonroot" + digest:       true,
		"localhost:5000/base:v1" + digest:                          true,
		"golang:1.26.8-bookworm" + digest:                          false, // short name
		"library/golang:1.26.8-bookworm" + digest:                  false, // no registry
		"gcr.io/distroless/static-debian12:nonroot":                false, // tag only
		"gcr.io/distroless/static-debian12" + digest:               false, // no tag to read
		"gcr.io/distroless/static-debian12:nonroot@sha256:f5b485e": false,
	} {
		if err := checkBaseImage(ref); (err == nil) != ok {
			t.Errorf("checkBaseImage(%s) = %v, want ok=%v", ref, err, ok)
		}
	}
}
