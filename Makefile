# hjepa-go. `make test` and `make demo` install what they need on a fresh
# Debian 12 machine (Go 1.26 assumed on PATH).
GO      ?= go
BENCH   ?= .
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STATICCHECK_VERSION := v0.8.2

.PHONY: all build test lint bench bench-deps golden deps demo

all: build

deps:
	$(GO) mod download

build: deps
	$(GO) build ./...

# The demo: H-JEPA on Fashion-MNIST (configs/fmnist-tiny.yaml) for a budget
# that ends within 15 minutes on 2 cores, then the linear probe (60k train /
# 10k test images) of the trained target encoder beside the same encoder at
# initialisation. DEMO_STEPS, DEMO_OUT and DEMO_SET (extra --set flags) tune it.
DEMO_STEPS ?= 450
DEMO_OUT   ?= results/demo
DEMO_SET   ?=
FMNIST     := /usr/share/datasets/fashion-mnist

demo: deps
	@[ -f $(FMNIST)/train-images-idx3-ubyte.gz ] || { $(SUDO) $(APT_GET) update -qq && $(SUDO) $(APT_GET) install -y -qq dataset-fashion-mnist; }
	$(GO) build -o bin/hjepa ./cmd/hjepa
	bin/hjepa train --config configs/fmnist-tiny.yaml --out $(DEMO_OUT) --set training.max_steps=$(DEMO_STEPS) $(DEMO_SET)
	bin/hjepa eval --config configs/fmnist-tiny.yaml $(DEMO_SET) --checkpoint $(DEMO_OUT)/checkpoints/checkpoint_latest --compare-init --out $(DEMO_OUT)/eval.json

# Unit, property, finite-difference and golden tests; the race detector over the
# packages with concurrency.
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race -short ./tensor/... ./data/... ./train/... ./eval/...

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); [ -z "$$out" ] || { echo "gofmt would change: $$out"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Baselines the benchmarks measure in the same run: OpenBLAS (dlopen'd by the
# benchmark only) and PyTorch 1.13 CPU.
bench-deps:
	@dpkg -s libopenblas0 python3-torch >/dev/null 2>&1 || { $(SUDO) $(APT_GET) update -qq && $(SUDO) $(APT_GET) install -y -qq libopenblas0 python3-torch; }

# make bench BENCH=<regex> runs only the matching benchmarks.
bench: deps bench-deps
	$(GO) run ./bench -run '$(BENCH)'

# Regenerate the PyTorch golden fixtures (needs python3-torch; CI does not).
golden: bench-deps
	/usr/bin/python3 tools/golden/make_fixtures.py --out nn/testdata/golden
