// Package kubetest runs a real Kubernetes API server (kube-apiserver with an
// embedded etcd) for integration tests.
//
// The server is the binary bin/kube-test-apiserver built by `make
// kube-apiserver` from tools/kube-test-apiserver, a separate Go module, so
// that k8s.io/kubernetes never enters this module's dependencies. bin/kubectl
// is built alongside it. If the binary is missing, Start returns an error; it
// never skips.
//
// Environment:
//
//	KUBE_TEST_APISERVER  path of the kube-test-apiserver binary
//	                     (default <repo root>/bin/kube-test-apiserver)
//	KUBE_TEST_KUBECTL    path of kubectl
//	                     (default: kubectl next to the kube-test-apiserver binary)
package kubetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	modulePath   = "github.com/acme/registry-api"
	readyTimeout = 60 * time.Second
	stopTimeout  = 20 * time.Second
)

// Server is a running (or stopped) kube-test-apiserver process.
type Server struct {
	// Dir is the state directory: certificates, etcd data, logs.
	Dir string
	// Kubeconfig is the path of the admin kubeconfig (Dir/kubeconfig).
	Kubeconfig string
	// Binary and KubectlBinary are the executables in use.
	Binary        string
	KubectlBinary string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	err    error         // cmd.Wait result, valid once done is closed
	output *syncBuffer   // the process's own stdout and stderr
}

// Start starts kube-test-apiserver on dir (created if needed) and waits until
// it is ready. A dir used before keeps its data and credentials.
func Start(dir string) (*Server, error) {
	bin, kubectl, err := binaries()
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Dir:           dir,
		Kubeconfig:    filepath.Join(dir, "kubeconfig"),
		Binary:        bin,
		KubectlBinary: kubectl,
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Stop sends SIGTERM and waits for the process to exit, killing it if it has
// not exited after 20 seconds. Stopping a stopped server is a no-op.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

// Restart stops the server if it is running and starts it again on the same
// directory, waiting until it is ready. Stored objects and credentials are
// kept; the ports are kept too unless they have been taken meanwhile, and
// Kubeconfig is rewritten accordingly.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(); err != nil {
		return err
	}
	return s.startLocked()
}

// RESTConfig returns a client configuration for the admin user, who is in
// the system:masters group.
func (s *Server) RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
}

// Clientset returns a clientset for the admin user.
func (s *Server) Clientset() (kubernetes.Interface, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Kubectl runs kubectl against the server as the admin user and returns its
// combined output.
func (s *Server) Kubectl(args ...string) ([]byte, error) {
	cmd := exec.Command(s.KubectlBinary, append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked()
}

func (s *Server) startLocked() error {
	readyFile := filepath.Join(s.Dir, "ready")
	// The server removes a stale ready file itself, but only once it runs;
	// remove it here so that it cannot be mistaken for readiness.
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	if err := os.Remove(readyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}

	s.output = &syncBuffer{}
	cmd := exec.Command(s.Binary, "-dir", s.Dir)
	cmd.Stdout = s.output
	cmd.Stderr = s.output
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", s.Binary, err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	s.err = nil
	go func(done chan struct{}) {
		s.err = cmd.Wait()
		close(done)
	}(s.done)

	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(readyFile); err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("kube-test-apiserver exited before becoming ready (%v)%s", s.err, s.diagnostics())
		case <-deadline.C:
			_ = cmd.Process.Kill()
			<-s.done
			return fmt.Errorf("kube-test-apiserver not ready after %v%s", readyTimeout, s.diagnostics())
		case <-tick.C:
		}
	}
}

func (s *Server) stopLocked() error {
	if s.cmd == nil {
		return nil
	}
	select {
	case <-s.done:
		return nil // already exited
	default:
	}
	defer func() { s.cmd = nil }()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping kube-test-apiserver: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-s.done:
		if s.err != nil {
			return fmt.Errorf("kube-test-apiserver: %w%s", s.err, s.diagnostics())
		}
		return nil
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("kube-test-apiserver did not exit within %v of SIGTERM; killed%s", stopTimeout, s.diagnostics())
	}
}

// diagnostics returns the process output and the end of the API server log,
// for error messages.
func (s *Server) diagnostics() string {
	var b strings.Builder
	if out := strings.TrimSpace(s.output.String()); out != "" {
		fmt.Fprintf(&b, "\noutput:\n%s", out)
	}
	for _, name := range []string{"apiserver.log", "etcd.log"} {
		if tail := tailFile(filepath.Join(s.Dir, name), 30); tail != "" {
			fmt.Fprintf(&b, "\nlast lines of %s:\n%s", filepath.Join(s.Dir, name), tail)
		}
	}
	return b.String()
}

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 16 << 10
	if st, err := f.Stat(); err == nil && st.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// binaries locates kube-test-apiserver and kubectl.
func binaries() (bin, kubectl string, err error) {
	bin = os.Getenv("KUBE_TEST_APISERVER")
	if bin == "" {
		root, err := repoRoot()
		if err != nil {
			return "", "", err
		}
		bin = filepath.Join(root, "bin", "kube-test-apiserver")
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return "", "", err
	}
	kubectl = os.Getenv("KUBE_TEST_KUBECTL")
	if kubectl == "" {
		kubectl = filepath.Join(filepath.Dir(bin), "kubectl")
	}
	if kubectl, err = filepath.Abs(kubectl); err != nil {
		return "", "", err
	}
	for _, p := range []string{bin, kubectl} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("%s not found (run `make kube-apiserver` in the repository root): %w", p, err)
		}
	}
	return bin, kubectl, nil
}

// repoRoot walks up from the working directory to the directory whose go.mod
// declares this module.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(b, modulePath) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod declaring module %s above %s (set KUBE_TEST_APISERVER to the kube-test-apiserver binary)", modulePath, wd)
		}
	}
}

func declaresModule(gomod []byte, path string) bool {
	for line := range strings.SplitSeq(string(gomod), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`) == path
		}
	}
	return false
}

// syncBuffer is a bytes.Buffer safe for concurrent writes by the process's
// stdout and stderr copiers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep memory bounded; only the start matters much
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
