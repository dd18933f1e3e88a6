package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/testkit"
)

// TestImageEmptyRoot builds the binary as the Dockerfile does and runs it as
// the image's user in a root filesystem that holds nothing else: no /etc, no
// /tmp, no CA certificates, no zone data. Whatever the binary needs of its
// base image shows here; REGISTRY_RUN_DATE_ZONE names a zone, which only the
// zone data embedded in the binary can resolve.
func TestImageEmptyRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	// Searchable by the image's user once it is /.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	uid, gid := imageUser(t)
	const version = "empty-root-test"
	makeBuild(t, version, filepath.Join(root, "registry-api"))
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("the root holds %d entries besides the binary", len(entries)-1)
	}

	logs := &startTap{start: make(chan startLine, 1)}
	stderr := &testkit.Buffer{}
	cmd := startInEmptyRoot(t, root, uid, gid, func() *exec.Cmd {
		return &exec.Cmd{
			Path: "/registry-api", // inside the root, as the image's ENTRYPOINT
			Args: []string{"/registry-api"},
			Dir:  "/",
			// Nothing from this process's environment, and no seed: the
			// root holds no file to read one from.
			Env: []string{
				"REGISTRY_STORE=memory",
				"REGISTRY_ADDR=127.0.0.1:0",
				"REGISTRY_RUN_DATE_ZONE=Asia/Shanghai",
				"REGISTRY_LOG_FORMAT=json",
			},
			Stdout: logs,
			Stderr: stderr,
		}
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	var start startLine
	select {
	case start = <-logs.start:
	case err := <-exited:
		stopped = true
		t.Fatalf("registry-api exited in an empty root before listening: %v\nstdout:\n%s\nstderr:\n%s", err, logs, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("registry-api did not listen within 30s\nstdout:\n%s\nstderr:\n%s", logs, stderr)
	}
	if start.Version != version {
		t.Errorf("the binary reports version %q, want %q as make build stamped it", start.Version, version)
	}

	base := "http://" + start.Addr
	if status, _, body := fetch(t, base, "/healthz"); status != http.StatusOK {
		t.Errorf("GET /healthz = %d: %s", status, body)
	}
	testkit.WaitFor(t, 10*time.Second, "GET /readyz answering 200", func() (bool, string) {
		status, _, body := fetch(t, base, "/readyz")
		return status == http.StatusOK, fmt.Sprintf("%d %s", status, body)
	})

	// It drains and exits cleanly on SIGTERM, as on a pod's deletion.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("registry-api exited with %v after SIGTERM\nstdout:\n%s\nstderr:\n%s", err, logs, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("registry-api still runs 20s after SIGTERM\nstdout:\n%s", logs)
	}
}

// startLine is what the test reads of the log line that says the server
// listens.
type startLine struct {
	Message string `json:"message"`
	Addr    string `json:"addr"`
	Version string `json:"version"`
}

// startTap keeps a process's JSON log and hands over its start line.
type startTap struct {
	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte
	start   chan startLine
}

func (l *startTap) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	l.partial = append(l.partial, p...)
	for {
		line, rest, ok := bytes.Cut(l.partial, []byte("\n"))
		if !ok {
			return len(p), nil
		}
		var s startLine
		if json.Unmarshal(line, &s) == nil && s.Message == "registry-api listening" {
			select {
			case l.start <- s:
			default:
			}
		}
		l.partial = rest
	}
}

func (l *startTap) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// startInEmptyRoot starts a command with root as its root directory, as the
// image's user, the first way that works here. Root chroots and then drops
// to that user. Otherwise, or where root cannot drop to it (root of a user
// namespace that maps no other id), the process gets a user namespace of its
// own, in which it is the image's user and may chroot; the network stays the
// host's, so 127.0.0.1 is this test's. Where neither works the test fails:
// it must not pass without having run.
func startInEmptyRoot(t *testing.T, root string, uid, gid int, newCmd func() *exec.Cmd) *exec.Cmd {
	t.Helper()
	type way struct {
		name string
		attr *syscall.SysProcAttr
	}
	var ways []way
	if os.Geteuid() == 0 {
		ways = append(ways, way{"chroot as root, then setuid", &syscall.SysProcAttr{
			Chroot:     root,
			Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		}})
	}
	ways = append(ways, way{"chroot in a user namespace of its own", &syscall.SysProcAttr{
		Chroot:      root,
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: os.Getegid(), Size: 1}},
	}})
	var failed []string
	for _, w := range ways {
		cmd := newCmd()
		cmd.SysProcAttr = w.attr
		err := cmd.Start()
		if err == nil {
			return cmd
		}
		failed = append(failed, fmt.Sprintf("%s: %v", w.name, err))
	}
	t.Fatalf("cannot run the binary in an empty root:\n  %s\n%s", strings.Join(failed, "\n  "), userNamespaceHint())
	return nil
}

// imageUser is the numeric USER uid:gid of the Dockerfile's runtime stage.
func imageUser(t *testing.T) (uid, gid int) {
	t.Helper()
	stages := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	users := stages[len(stages)-1].args("USER")
	if len(users) != 1 {
		t.Fatalf("runtime stage USER lines = %q, want one", users)
	}
	u, g, _ := strings.Cut(users[0], ":")
	uid, errU := strconv.Atoi(u)
	gid, errG := strconv.Atoi(g)
	if errU != nil || errG != nil {
		t.Fatalf("runtime USER %s, want numeric uid:gid", users[0])
	}
	return uid, gid
}

// userNamespaceHint says which of the kernel's switches, if any, keeps an
// unprivileged user from creating a user namespace.
func userNamespaceHint() string {
	hint := "run the tests as root, or where unprivileged user namespaces are allowed"
	for file, off := range map[string]string{
		"/proc/sys/user/max_user_namespaces":                     "0",
		"/proc/sys/kernel/unprivileged_userns_clone":             "0",
		"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1",
	} {
		if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) == off {
			hint += fmt.Sprintf(" (%s is %s here)", strings.TrimPrefix(file, "/proc/sys/"), off)
		}
	}
	return hint
}
