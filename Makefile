# The two commands of the README's quick start: `make demo` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLUSTER_STAMP := $(VENV)/.installed-cluster

.PHONY: demo test lint typecheck pytest system-deps bench bench-latency bench-throughput clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Ray (the optional `cluster` extra) only for the tests: `make demo` stays a light install
$(CLUSTER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,cluster]'
	touch $(CLUSTER_STAMP)

demo: $(STAMP)
	$(BIN)/streamer demo

system-deps:
	bash scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(CLUSTER_STAMP)
	$(BIN)/mypy

pytest: $(CLUSTER_STAMP) system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not live_heavy" --durations=12
	$(BIN)/python -m pytest -q -m live_heavy --durations=5

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/decode_sync.py
	$(BIN)/python benchmarks/model_throughput.py

bench-latency: $(STAMP) system-deps
	$(BIN)/streamer bench latency --impulses 50 --json latency.json --plot latency.png

bench-throughput: $(STAMP)
	$(BIN)/streamer bench throughput --json throughput.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
