# Builds a real Kubernetes API server (kube-apiserver + embedded etcd) and a
# matching kubectl for the integration tests. Include this file from the root
# Makefile; recipes run from the repository root.
#
# The tool is its own Go module, so k8s.io/kubernetes stays out of the root
# go.mod. The version below must match k8s.io/kubernetes in
# tools/kube-test-apiserver/go.mod; without it the binaries report v0.0.0 and
# kubectl cannot parse the server version.

KUBE_TEST_APISERVER_K8S_VERSION := v1.37.2
KUBE_TEST_APISERVER_K8S_MAJOR := 1
KUBE_TEST_APISERVER_K8S_MINOR := 37
KUBE_TEST_APISERVER_LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(KUBE_TEST_APISERVER_K8S_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(KUBE_TEST_APISERVER_K8S_MAJOR) \
	-X k8s.io/component-base/version.gitMinor=$(KUBE_TEST_APISERVER_K8S_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean

# Always runs go build: the Go build cache makes a warm rebuild take seconds,
# and go build knows the real dependencies better than make does.
.PHONY: kube-apiserver
kube-apiserver: ## Build bin/kube-test-apiserver and bin/kubectl (real kube-apiserver + etcd for integration tests)
	cd tools/kube-test-apiserver && go build -trimpath -ldflags '$(KUBE_TEST_APISERVER_LDFLAGS)' -o ../../bin/ . k8s.io/kubernetes/cmd/kubectl
