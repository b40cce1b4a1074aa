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
# Fresh LiteRT cases checked through the CLI by `make conformance` (not the fixtures' seed).
LITERT_CASES ?= 60
LITERT_SEED ?= 20261125

.PHONY: help setup demo test lint fmt clippy doc unit conformance bench pr clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV_STAMP) ## Install everything from the package registries (idempotent)
	$(CARGO) fetch --locked

$(VENV_STAMP): $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet -r $(REQUIREMENTS)
	touch $@

demo: ## Run the built-in demo model end to end on the CPU: output and trace root
	$(CARGO) run --release --locked -p inference -- demo

test: setup lint unit conformance ## Everything CI runs: lint, unit/property/integration tests, conformance

lint: fmt clippy doc ## rustfmt, clippy and rustdoc, warnings as errors

fmt:
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked --quiet

unit: ## cargo test on the whole workspace
	$(CARGO) test --workspace --locked

conformance: $(VENV_STAMP) ## Fixtures and fresh random cases against LiteRT 2.3 itself
	$(CARGO) build --release --locked -p inference
	$(VENV_PY) scripts/litert_fully_connected.py verify --dir inference/tests/fixtures/litert_fully_connected
	$(VENV_PY) scripts/litert_fully_connected.py check-cli --bin target/release/inference \
		--cases $(LITERT_CASES) --seed $(LITERT_SEED)

bench: ## Criterion benchmarks (int8 GEMM GOPS and more)
	$(CARGO) bench --locked -p inference --bench bench_main

pr: fmt clippy doc unit ## What to run before a commit

clean: ## Remove build outputs and the Python environment
	$(CARGO) clean
	rm -rf $(VENV)
