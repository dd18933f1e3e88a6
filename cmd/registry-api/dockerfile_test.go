package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDockerfile checks that the Dockerfile builds with `make build` only,
// runs as non-root on distroless, and labels the image with where it comes
// from, its version and its commit, taken from build arguments.
func TestDockerfile(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a runtime stage", len(stages))
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

	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:nonroot$`).MatchString(runtime.image) {
		t.Errorf("runtime image %s, want gcr.io/distroless/static…:nonroot", runtime.image)
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
