# `make run`: the embedded default (3 tiny SLMs + tiny LLM, 5 LaDa rounds) into runs/<time>/
# `make test`: the test suite (fast tests; `make test-slow` for the slow ones)
SHELL := /bin/bash
export FLWR_TELEMETRY_ENABLED := 0
export FLWR_DISABLE_UPDATE_CHECK := 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export HF_HUB_OFFLINE := 1

.PHONY: setup run test test-slow test-flower lint bench

setup:
	@bash scripts/setup.sh

run: setup
	.venv/bin/lada run --out runs/$$(date +%Y%m%d-%H%M%S)

test: setup
	.venv/bin/python -m pytest

test-slow: setup
	.venv/bin/python -m pytest -m slow

test-flower: setup
	.venv/bin/python -m pytest -m slow tests/test_flower_sim.py tests/test_flower_deploy.py

lint: setup
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks

bench: setup
	.venv/bin/python benchmarks/train_throughput.py
