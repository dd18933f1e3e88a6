# registry-api: every task a developer or CI runs is a target here.
# `make help` lists them.

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
BIN         := bin/registry-api
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# `make image` builds the Dockerfile with the first of docker, podman and
# buildah on PATH; CONTAINER_TOOL=podman (a name or a path) chooses another.
CONTAINER_TOOL ?= $(firstword $(foreach tool,docker podman buildah,$(if $(shell command -v $(tool) 2>/dev/null),$(tool))))
IMAGE       ?= registry-api:$(VERSION)
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# Integration tests build a real kube-apiserver first (minutes when cold).
INTEGRATION_TIMEOUT ?= 40m
# The unit tests build the binary as the image does, a cold build of its own.
UNIT_TIMEOUT ?= 25m
# Packages with integration-tagged tests; the others would only report "no tests to run".
INTEGRATION_PKGS = $(shell grep -rl --include='*_test.go' '^//go:build integration' cmd internal | xargs -n1 dirname | sort -u | sed 's|^|./|')

.DEFAULT_GOAL := help

include tools/kube-test-apiserver/build.mk
include tools/swagger-ui.mk
include tools/lint/lint.mk

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/registry-api (static, trimmed, version stamped), as the Dockerfile does
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/registry-api

.PHONY: image
image: ## Build the image registry-api:VERSION (IMAGE) with docker, podman or buildah, whichever is installed (CONTAINER_TOOL chooses)
	@if [ -z "$(CONTAINER_TOOL)" ]; then echo "make image: none of docker, podman or buildah is on PATH; install one or set CONTAINER_TOOL" >&2; exit 1; fi
	$(CONTAINER_TOOL) build -f Dockerfile --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .

.PHONY: run
run: ## Run locally on the memory store with demo data (no cluster needed) on :8080
	REGISTRY_STORE=memory REGISTRY_SEED=demo/seed.yaml REGISTRY_SEED_KEEPALIVE=true \
	REGISTRY_LOG_FORMAT=$${REGISTRY_LOG_FORMAT:-console} $(GO) run ./cmd/registry-api

.PHONY: test
test: lint test-unit test-integration test-fuzz ## Run everything: lint, unit tests, integration tests against a real API server, a short fuzz

.PHONY: test-unit
test-unit: ## Unit and HTTP tests with -race (quick loop, no API server)
	$(GO) test -race -count=1 -timeout $(UNIT_TIMEOUT) ./...

.PHONY: test-integration
test-integration: kube-apiserver ## Integration tests against a real kube-apiserver that the suite starts itself
	$(GO) test -race -count=1 -tags integration -run Integration -timeout $(INTEGRATION_TIMEOUT) $(INTEGRATION_PKGS)

.PHONY: lint
lint: lint-openapi lint-client ## gofmt, go vet, staticcheck, go mod tidy check, OpenAPI linters, a generated TypeScript client
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags integration ./...
	$(GO) mod tidy -diff

.PHONY: bench
bench: ## Benchmarks recorded in BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./internal/...

.PHONY: test-fuzz
test-fuzz: ## Fuzz the whole request path briefly (FUZZTIME, default 10s)
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $${FUZZTIME:-10s} ./internal/http/

.PHONY: fuzz
fuzz: ## Fuzz the entry parser, then the whole request path, for a while each (FUZZTIME, default 60s)
	$(GO) test -run '^$$' -fuzz FuzzParseEntry -fuzztime $${FUZZTIME:-60s} ./internal/model/
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $${FUZZTIME:-60s} ./internal/http/

.PHONY: clean
clean: ## Remove built binaries
	rm -rf bin

.PHONY: loadtest
loadtest: build ## Loopback load test with wrk (apt-get install wrk): registry-api against a bare handler writing the same bytes, one core each (results in BENCHMARKS.md)
	$(GO) run ./tools/loadtest -bin $(BIN)

.PHONY: followtest
followtest: build ## 1,000 streams of every env, then 1,000 blocked queries on GET /v1/routes, on one replica: memory, CPU at rest and per change, reach; gzip beside plain
	$(GO) run ./tools/loadtest -bin $(BIN) -followers 1000

.PHONY: polltest
polltest: build kube-apiserver ## One idle replica's polls over a real API server holding the 10,000-instance seed: CPU and bytes per poll, at rest and with one ConfigMap written per poll
	$(GO) run ./tools/loadtest -bin $(BIN) -poll 60s

.PHONY: versiontest
versiontest: build kube-apiserver ## Version registrations at scale over a real API server: 300 apps x 2 versions x 20 methods, 36,000 ready endpoints; storm writes, rolling update to 1,000 streams, memory, writes at rest
	$(GO) run ./tools/loadtest -bin $(BIN) -versions 5m

.PHONY: hostiletest
hostiletest: build ## Hostile load on one replica over the 10,000-instance seed: peak memory (sizes the deployment's limit)
	$(GO) run ./tools/loadtest -bin $(BIN) -hostile 30s
