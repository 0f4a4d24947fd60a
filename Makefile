# Two entry points: `make demo` (set up + run the whole path on built-in synthetic data)
# `make test` (set up + run the test suite) and `make serve` (the web app on http://127.0.0.1:8000). Both create .venv if it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/leukodx: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/leukodx

setup: $(BIN)/leukodx

demo: setup
	$(BIN)/leukodx demo --out demo_out

test: setup
	$(BIN)/python -m pytest tests

serve: setup
	$(BIN)/leukodx serve

lint: setup
	$(BIN)/ruff check src tests benchmarks

.PHONY: setup demo test lint serve
