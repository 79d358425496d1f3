# haul's build, generation and test entry points. `make test` installs what it
# needs (Debian packages when root, Go tools at pinned versions) and runs every
# test with -race.
SHELL := /bin/bash
TOOLS := $(HOME)/.cache/haul/bin
export PATH := $(TOOLS):$(PATH)

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1

.PHONY: all build test generate check-generate tools fuzz bench

all: build

build:
	go build -o bin/haul ./cmd/haul
	CGO_ENABLED=0 go build -o bin/haul-taskhost ./cmd/haul-taskhost

tools:
	@scripts/install-deps.sh

generate: tools
	rm -rf internal/gen
	protoc -I proto --go_out=. --go_opt=module=github.com/haul-dev/haul \
	  --connect-go_out=. --connect-go_opt=module=github.com/haul-dev/haul \
	  $$(find proto -name '*.proto' | sort)

check-generate: generate
	@git diff --exit-code -- internal/gen || (echo "generated code is stale: run make generate and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- internal/gen)" || (echo "generated code is stale: untracked files in internal/gen" >&2; exit 1)

test: tools check-generate
	go vet ./...
	go test -race -count=1 -timeout 25m ./...

fuzz:
	go test -run '^$$' -fuzz FuzzCompile -fuzztime 30s ./internal/spec
	go test -run '^$$' -fuzz FuzzQuantity -fuzztime 15s ./internal/spec

bench:
	go test -run '^$$' -bench . ./internal/sched
