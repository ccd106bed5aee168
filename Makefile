# hjepa-go. `make test` and `make demo` install what they need on a fresh
# Debian 12 machine (Go 1.26 assumed on PATH).
GO      ?= go
BENCH   ?= .
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STATICCHECK_VERSION := v0.8.2
# go-nvml's cgo wrappers call NVML functions NVIDIA marked deprecated; without
# this every fresh build prints ~150 lines of gcc warnings.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: all build test lint bench bench-deps golden deps demo gpu-build

all: build

deps:
	$(GO) mod download

# The three binaries, static (no cgo: they run on any Linux of the same
# architecture; the GPU is reached through dlopen at run time), stamped with
# the commit (hjepa --version).
COMMIT  := $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo +modified)
LDFLAGS := -X github.com/hjepa-go/hjepa/train.Commit=$(COMMIT)
build: deps
	mkdir -p bin
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/hjepa ./cmd/hjepa-coordinator ./cmd/hjepa-worker
	@echo "built bin/hjepa bin/hjepa-coordinator bin/hjepa-worker: $$(bin/hjepa --version)"

# The demo: H-JEPA on Fashion-MNIST (configs/fmnist-tiny.yaml, its
# training.max_steps) trained data-parallel by `hjepa launch` with DEMO_NPROC
# workers (a coordinator and DEMO_NPROC workers sharing the cores; the global
# batch stays the preset's 64), then one evaluation table: the linear probe
# and kNN of the raw pixels, the encoder at initialisation, the trained
# target encoder and the trained context encoder, on the preset's probe
# protocol (evaluation.train_limit / test_limit). DEMO_OUT is replaced on
# every run. DEMO_NPROC, DEMO_OUT and DEMO_SET (extra --set flags) tune it.
DEMO_NPROC ?= 2
DEMO_OUT   ?= results/demo
DEMO_SET   ?=
FMNIST     := /usr/share/datasets/fashion-mnist

.PHONY: fmnist pretrain-fmnist
fmnist:
	@[ -f $(FMNIST)/train-images-idx3-ubyte.gz ] || { $(SUDO) $(APT_GET) update -qq && $(SUDO) $(APT_GET) install -y -qq dataset-fashion-mnist; }

# A static CPU build: no cgo to compile, so a fresh machine builds it in
# well under a minute.
bin/hjepa-cpu: deps FORCE
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/hjepa
.PHONY: FORCE
FORCE:

demo: fmnist bin/hjepa-cpu
	@start=$$(date +%s); rm -rf $(DEMO_OUT); \
	bin/hjepa-cpu launch --nproc $(DEMO_NPROC) --config configs/fmnist-tiny.yaml --out $(DEMO_OUT) \
	  --set data.batch_size=$$((64 / $(DEMO_NPROC))) $(DEMO_SET) && \
	bin/hjepa-cpu eval --config configs/fmnist-tiny.yaml $(DEMO_SET) --checkpoint $(DEMO_OUT)/checkpoints/checkpoint_latest \
	  --all --out $(DEMO_OUT)/eval.json && \
	echo "make demo: training and evaluation took $$(( $$(date +%s) - start )) s; the table is in $(DEMO_OUT)/eval.json"

# The longer recipe (configs/fmnist-pretrain.yaml, at most 90 minutes on 2
# cores): trained like the demo by PRETRAIN_NPROC data-parallel workers
# (the global batch stays the preset's 64; two 1-thread workers step ~25%
# faster than one 2-thread process on 2 cores), then the full probe protocol
# (60k training images, 10k test images) of the trained encoders beside the
# raw pixels and the initialisation. PRETRAIN_OUT is replaced on every run.
PRETRAIN_NPROC ?= 2
PRETRAIN_OUT   ?= results/pretrain-fmnist
PRETRAIN_SET   ?=
pretrain-fmnist: fmnist bin/hjepa-cpu
	@start=$$(date +%s); rm -rf $(PRETRAIN_OUT); \
	bin/hjepa-cpu launch --nproc $(PRETRAIN_NPROC) --config configs/fmnist-pretrain.yaml --out $(PRETRAIN_OUT) \
	  --set data.batch_size=$$((64 / $(PRETRAIN_NPROC))) $(PRETRAIN_SET) && \
	bin/hjepa-cpu eval --config configs/fmnist-pretrain.yaml $(PRETRAIN_SET) --checkpoint $(PRETRAIN_OUT)/checkpoints/checkpoint_latest \
	  --all --out $(PRETRAIN_OUT)/eval.json && \
	echo "make pretrain-fmnist: training and evaluation took $$(( $$(date +%s) - start )) s; the table is in $(PRETRAIN_OUT)/eval.json"

# Unit, property, finite-difference and golden tests; the race detector over the
# packages with concurrency.
test: deps
	@command -v g++ >/dev/null 2>&1 || { $(SUDO) $(APT_GET) update -qq && $(SUDO) $(APT_GET) install -y -qq g++; } # cuda/emu is C++ (cgo)
	$(GO) vet ./...
	$(GO) vet -tags nocuda ./device/... ./train/... ./cmd/... ./worker/...
	$(GO) test -count=1 -tags nocuda ./device/...
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race -short ./tensor/... ./data/... ./train/... ./eval/... ./cuda/... ./collective/... ./coordinator/... ./worker/... ./device/...

# Every Go fuzz target in turn, FUZZTIME each (make test runs their seed
# corpora; this explores). One FUZZ line per target; a crash leaves its input
# under the package's testdata/fuzz/.
FUZZTIME ?= 60s
.PHONY: fuzz
fuzz: deps
	GO=$(GO) FUZZTIME=$(FUZZTIME) tools/fuzz.sh

# Seeded random faults (SIGKILL, SIGSTOP, SIGTERM of workers, coordinator and
# launch; a damaged checkpoint; a full disk) against real `hjepa launch` jobs,
# CHAOS_ROUNDS rounds (make test runs 3); then, where Docker is present,
# CHAOS_COMPOSE_ROUNDS rounds of network cuts, paused containers and crashes
# against deploy/compose.yaml (make test runs 1). CHAOS_SEED=<seed from the
# log> replays the first part, CHAOS_COMPOSE_SEED the second.
CHAOS_ROUNDS ?= 50
CHAOS_SEED ?= 0
CHAOS_COMPOSE_ROUNDS ?= 10
CHAOS_COMPOSE_SEED ?= 0
.PHONY: chaos
chaos: deps
	$(GO) test -count=1 -run TestChaos -v ./cmd/hjepa -chaos-rounds $(CHAOS_ROUNDS) -chaos-seed $(CHAOS_SEED) -timeout 0
	$(GO) test -count=1 -run TestComposeChaos -v ./deploy -compose-chaos-rounds $(CHAOS_COMPOSE_ROUNDS) -compose-chaos-seed $(CHAOS_COMPOSE_SEED) -timeout 0

# The module's import graph, lowest layer first; fails when an import runs
# back up or a package other than cmd, worker and bench imports train.
.PHONY: imports
imports:
	$(GO) run ./tools/layers

lint: deps imports
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); [ -z "$$out" ] || { echo "gofmt would change: $$out"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(MAKE) proto-tools && cd proto && $(PROTO_TOOLS)/buf lint

# Baselines the benchmarks measure in the same run: OpenBLAS (dlopen'd by the
# benchmark only) and PyTorch 1.13 CPU.
bench-deps:
	@dpkg -s libopenblas0 python3-torch >/dev/null 2>&1 || { $(SUDO) $(APT_GET) update -qq && $(SUDO) $(APT_GET) install -y -qq libopenblas0 python3-torch; }

# make bench BENCH=<regex> runs only the matching benchmarks.
# BENCH_ARGS passes flags, e.g. BENCH_ARGS='-sgemm avx2' (the AVX2 GEMM path
# on an AVX-512 machine) or BENCH_ARGS='-cpuprofile step.prof'.
BENCH_ARGS ?=
bench: deps bench-deps
	$(GO) run ./bench -run '$(BENCH)' $(BENCH_ARGS)

# Regenerate the PyTorch golden fixtures (needs python3-torch; CI does not).
golden: bench-deps
	/usr/bin/python3 tools/golden/make_fixtures.py --out nn/testdata/golden
	/usr/bin/python3 tools/golden/make_step_fixture.py --out jepa/testdata/golden

# The container image (deploy/Dockerfile, FROM scratch): a static CPU build
# of hjepa and the presets. `docker-compose -f deploy/compose.yaml up` then
# runs a coordinator and two workers.
.PHONY: image
image:
	rm -rf bin/image && mkdir -p bin/image
	CGO_ENABLED=0 $(GO) build -tags nocuda -ldflags '$(LDFLAGS)' -o bin/image/hjepa ./cmd/hjepa
	cp -r configs bin/image/configs
	docker build -f deploy/Dockerfile -t hjepa:dev bin/image

# The GPU image (deploy/Dockerfile.gpu): the static build with the CUDA
# backend on a CUDA runtime base (CUDA_BASE, default NVIDIA's CUDA 12 runtime
# image). `hjepa deploy compose --gpus N` writes the compose file for a host
# with N GPUs (deploy/compose.gpu.yaml is N=2).
CUDA_BASE ?= nvidia/cuda:12.4.1-runtime-ubuntu22.04
.PHONY: image-gpu
image-gpu:
	rm -rf bin/image-gpu && mkdir -p bin/image-gpu
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/image-gpu/hjepa ./cmd/hjepa
	cp -r configs bin/image-gpu/configs
	docker build -f deploy/Dockerfile.gpu --build-arg CUDA_BASE=$(CUDA_BASE) -t hjepa:gpu bin/image-gpu

# GPU checks (issue 5). A GPU machine needs no Go: build static binaries here,
# copy the checkout with bin/gpu there and run tools/gpu-check.sh from its root.
gpu-build:
	mkdir -p bin/gpu
	CGO_ENABLED=0 $(GO) test -c -o bin/gpu/cuda.test ./cuda
	CGO_ENABLED=0 $(GO) build -o bin/gpu/bench ./bench
	CGO_ENABLED=0 $(GO) build -o bin/gpu/hjepa ./cmd/hjepa

# The CUDA kernels' PTX (cuda/kernels/hjepa.ptx), committed because CI and
# users have no nvcc: regenerate it after every change to hjepa.cu (a test
# fails while it is stale). Installs Debian's nvidia-cuda-toolkit (contrib,
# non-free) when nvcc is missing.
# The gRPC protocol (proto/hjepa/v1): buf and the two Go plugins from the Go
# module proxy into bin/tools, then lint and generate. The generated code is
# committed; proto/hjepa/v1/proto.sha256 records the inputs it came from, and a
# test fails while it is stale.
.PHONY: proto proto-tools
BUF_VERSION            := v1.75.0
PROTOC_GEN_GO_VERSION  := v1.36.12
PROTOC_GEN_GRPC_VERSION := v1.6.2
PROTO_TOOLS := $(CURDIR)/bin/tools
proto-tools:
	@[ -x $(PROTO_TOOLS)/buf ] || GOBIN=$(PROTO_TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@[ -x $(PROTO_TOOLS)/protoc-gen-go ] || GOBIN=$(PROTO_TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@[ -x $(PROTO_TOOLS)/protoc-gen-go-grpc ] || GOBIN=$(PROTO_TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GRPC_VERSION)
proto: proto-tools
	cd proto && PATH=$(PROTO_TOOLS):$$PATH buf lint && PATH=$(PROTO_TOOLS):$$PATH buf generate
	cd proto && sha256sum buf.yaml buf.gen.yaml hjepa/v1/*.proto > hjepa/v1/proto.sha256

.PHONY: ptx
NVCC ?= nvcc
ptx:
	@command -v $(NVCC) >/dev/null 2>&1 || { \
	  [ -f /etc/apt/sources.list.d/contrib-nonfree.sources ] || grep -qs 'contrib.*non-free\|non-free.*contrib' /etc/apt/sources.list || \
	    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | \
	    $(SUDO) tee /etc/apt/sources.list.d/contrib-nonfree.sources >/dev/null; \
	  $(SUDO) $(APT_GET) update -qq && $(SUDO) $(APT_GET) install -y -qq nvidia-cuda-toolkit; }
	cd cuda/kernels && $(NVCC) -ptx -arch=compute_80 -O3 -std=c++17 -o hjepa.ptx.tmp hjepa.cu && \
	  { echo "// source-sha256: $$(sha256sum hjepa.cu | cut -d' ' -f1)"; cat hjepa.ptx.tmp; } > hjepa.ptx && rm hjepa.ptx.tmp
