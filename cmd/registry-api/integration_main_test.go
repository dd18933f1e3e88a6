//go:build integration

// The integration tests run serve against a real kube-apiserver with etcd
// (bin/kube-test-apiserver and bin/kubectl, built by `make kube-apiserver`).
// Without those binaries they fail; they never skip. Run them with
//
//	make test-integration
//
// or, for this package only,
//
//	go test -race -count=1 -tags integration -run Integration ./cmd/registry-api/
package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/acme/registry-api/internal/kubetest"
)

// shared is the API server that the package's integration tests share; tests
// isolate themselves in namespaces of their own. A test that must stop or
// restart its server starts one of its own instead.
var shared struct {
	once   sync.Once
	dir    string
	server *kubetest.Server
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := stopSharedServer(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the shared kube-apiserver: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// sharedServer returns the package's API server, starting it on first use so
// that a run selecting only tests that need none (-run TestIntegrationBuild,
// or the unit tests with -tags integration) does not pay for it.
func sharedServer(t *testing.T) *kubetest.Server {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "registry-api-itest-")
		if shared.err != nil {
			return
		}
		began := time.Now()
		shared.server, shared.err = kubetest.Start(shared.dir)
		t.Logf("shared kube-apiserver ready after %v", time.Since(began).Round(time.Millisecond))
	})
	if shared.err != nil {
		t.Fatalf("starting the shared kube-apiserver: %v", shared.err)
	}
	return shared.server
}

func stopSharedServer() error {
	var err error
	if shared.server != nil {
		err = shared.server.Stop()
	}
	if shared.dir != "" {
		if rmErr := os.RemoveAll(shared.dir); err == nil {
			err = rmErr
		}
	}
	return err
}
