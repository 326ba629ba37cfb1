# coder — build, run and test. See README.md.
SHELL := /bin/bash
export GOTOOLCHAIN := local
# Where deps.sh installs: $CODER_CACHE_DIR when set (CI: a machine-level cache), else ./.cache.
CACHE_DIR ?= $(or $(CODER_CACHE_DIR),$(CURDIR)/.cache)
export CODER_CACHE_DIR := $(CACHE_DIR)
# ts_debug_websockets compiles upstream's DERP-over-websockets client in (for
# --derp-force-websockets); everything is built and tested with it.
export GOFLAGS := $(GOFLAGS) -tags=ts_debug_websockets
GO_PACKAGES := ./...
TEST_FLAGS ?= -count=1 -timeout 40m
BENCH_FLAGS ?= -run '^$$' -bench . -benchmem -count 1

.PHONY: all build deps run ha test chaos bench bench-ha fuzz lint gen site clean

all: build

## build: compile the single coder binary into ./bin/coder
build:
	@mkdir -p bin
	go build -o bin/coder ./cmd/coder

## deps: install what a fresh Debian machine lacks (PostgreSQL server, OpenSSH, iptables, Docker,
## terraform v1.8.5, OpenTofu v1.6.3, the coder, docker and external Terraform providers in a
## local mirror, the workspace image coder-workspace-base:bookworm)
deps:
	bash scripts/deps.sh

## run: install what is missing, build, and start coderd with embedded PostgreSQL on http://127.0.0.1:3000
## (also listening on the Docker bridge for docker workspaces; see docs/templates.md)
run: deps build
	./scripts/run.sh

## ha: build, then start PostgreSQL, 3 replicas and HAProxy on http://127.0.0.1:3000 (docs/ha.md)
ha: build
	./scripts/ha.sh

## test: the one test command (real PostgreSQL, terraform, OpenSSH, network namespaces)
test: deps
	go test $(TEST_FLAGS) $(GO_PACKAGES)

## chaos: fault experiments against the built binary (e2e/chaos, build tag chaos): kill -9 coderd,
## its embedded PostgreSQL, the provisioner daemon or an agent at a seeded-random point of each
## create → ssh → stop → start → ssh → delete iteration, then check convergence, leaks and build logs.
## CHAOS_ITERATIONS (default 4), CHAOS_SEED (default random; the log prints it to rerun a run); it
## runs ./bin/coder as built by `make build`.
CHAOS_ITERATIONS ?= 4
CHAOS_SEED ?=
CHAOS_TIMEOUT ?= 90m
chaos: deps build
	CHAOS_CODER_BIN=$(CURDIR)/bin/coder CHAOS_ITERATIONS=$(CHAOS_ITERATIONS) CHAOS_SEED=$(CHAOS_SEED) \
		go test -tags=chaos,ts_debug_websockets -count=1 -timeout $(CHAOS_TIMEOUT) -v -run '^TestChaos$$' ./e2e/chaos/

## bench: run the Go benchmarks; results land in bench.txt (compare runs with benchstat)
bench: deps
	go test $(BENCH_FLAGS) $(GO_PACKAGES) | tee bench.txt

## bench-ha: the high-availability benchmarks of docs/performance.md (real replicas, HAProxy,
## PostgreSQL): `coder ssh WS -- true` same-replica / cross-replica / via the load balancer, kill -9
## recovery over 10 kills, and the PostgreSQL coordinator at scale with BENCH_COORD_PEERS peers
## (default 10000) over 3 replicas; results land in bench-ha.txt
BENCH_COORD_PEERS ?= 10000
bench-ha: deps
	{ go test -count=1 -timeout 30m -run '^$$' -bench 'BenchmarkHASSHTrue|BenchmarkHAKillRecovery' -benchtime 1x ./cli/ && \
	  CODER_BENCH_COORD_PEERS=$(BENCH_COORD_PEERS) go test -count=1 -timeout 30m -run '^$$' \
		-bench 'BenchmarkPostgresAtScale|BenchmarkInMemoryNodeUpdate' -benchtime 2000x ./coordinator/; } | tee bench-ha.txt

## fuzz: run each Go fuzz target for FUZZTIME (default 30s) with FUZZPARALLEL workers (default 1);
## the targets are listed in scripts/fuzz.sh (`make test` runs their seed corpora)
FUZZTIME ?= 30s
FUZZPARALLEL ?= 1
fuzz: deps
	FUZZTIME=$(FUZZTIME) FUZZPARALLEL=$(FUZZPARALLEL) bash scripts/fuzz.sh

## lint: go vet and gofmt must both be clean
lint:
	go vet $(GO_PACKAGES)
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## gen: regenerate generated code (sqlc queries)
gen:
	bash database/generate.sh

## site: refresh the vendored xterm.js files from npm (needs npm; the results are committed,
## so build never needs the network)
site:
	cd site && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf bin bench.txt bench-ha.txt
