# Two entry points: `make demo` (set up + run the whole path on built-in synthetic data)
# `make test` (set up + run the test suite) and `make serve` (the web app on http://127.0.0.1:8000). Both create .venv if it is missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/leukodx: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
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

# pin today's versions of every dependency (after changing pyproject.toml: make lock, then commit constraints.txt)
lock: setup
	$(BIN)/pip install --quiet -e ".[dev]"
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt

.PHONY: setup demo test lint serve lock
