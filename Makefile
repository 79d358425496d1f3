# haul's build, generation and test entry points. `make test` installs what it
# needs (Debian packages when root, Go tools at pinned versions) and runs every
# test with -race.
SHELL := /bin/bash
TOOLS := $(HOME)/.cache/haul/bin
export PATH := $(TOOLS):$(PATH)

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1

.PHONY: all build haul-query test test-short test-kube generate check-generate tools fuzz bench chaos
.PHONY: ui ui-check

all: build

build:
	go build -o bin/haul ./cmd/haul
	CGO_ENABLED=0 go build -o bin/haul-taskhost ./cmd/haul-taskhost

# haul query's SQL engine (DuckDB, cgo; about 570 MB of libraries in the
# module cache the first time): haul finds it next to itself or in PATH.
haul-query:
	go build -o bin/haul-query ./cmd/haul-query

tools:
	@scripts/install-deps.sh

generate: tools
	rm -rf internal/gen
	protoc -I proto --go_out=. --go_opt=module=github.com/haul-dev/haul \
	  --connect-go_out=. --connect-go_opt=module=github.com/haul-dev/haul \
	  $$(find proto -name '*.proto' | sort)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  protoc -I proto --include_source_info --include_imports --descriptor_set_out="$$tmp/api.pb" \
	    $$(find proto/haul/api/v1 -name '*.proto' | sort) && \
	  go run ./tools/apidoc -in "$$tmp/api.pb" -out docs/api.md

check-generate: generate
	@git diff --exit-code -- internal/gen docs/api.md || (echo "generated code is stale: run make generate and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- internal/gen docs/api.md)" || (echo "generated code is stale: untracked files in internal/gen or docs/api.md" >&2; exit 1)

test: tools check-generate ui-check
	go vet ./...
	go test -race -count=1 -timeout 25m ./...

# The fast tier for iteration: every package but the end-to-end ones
# (internal/e2e, internal/kubee2e), with -race. CI runs `make test`.
test-short:
	go test -race -count=1 $$(go list ./... | grep -v -e /internal/e2e -e /internal/kubee2e)

# The Kubernetes integration tests, verbosely: real etcd and kube-apiserver
# (built from the module proxy on first use, cached under ~/.cache/haul/kube),
# the test node agent, the kube backend, and haul end to end on two clusters.
# `make test` runs them too.
test-kube: tools
	go test -race -count=1 -timeout 20m -v ./internal/kubetest/... ./internal/kube/... ./internal/kubee2e/...

# The full chaos test of the production topology, verbosely: PostgreSQL,
# two gateways and three runners as processes; 20 SIGKILLs of runners, 20
# of gateways and 5 PostgreSQL restarts while a 20,000-task job and a
# dynamic one run. `make test` runs its short form. HAUL_CHAOS_SEED=N
# repeats a run's random choices; the last line is the summary that
# docs/benchmarks.md records.
chaos:
	HAUL_CHAOS=full go test -race -count=1 -timeout 60m -v -run '^TestChaos$$' ./internal/chaos/

fuzz:
	go test -run '^$$' -fuzz FuzzCompile -fuzztime 30s ./internal/spec
	go test -run '^$$' -fuzz FuzzQuantity -fuzztime 15s ./internal/spec

bench:
	go test -run '^$$' -bench . ./internal/sched

# The web UI: ui/ built with Vite into internal/ui/dist, which is committed
# (go build embeds it and needs no Node). ui-check rebuilds into a
# temporary directory and fails when the committed build differs.
ui:
	cd ui && npm ci && npm run build -- --outDir ../internal/ui/dist --emptyOutDir

ui-check:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	  (cd ui && npm ci && npm run build -- --outDir "$$tmp/dist" --emptyOutDir) >/dev/null && \
	  { diff -r "$$tmp/dist" internal/ui/dist || \
	    { echo "internal/ui/dist is not the build of ui/: run make ui" >&2; exit 1; }; }
