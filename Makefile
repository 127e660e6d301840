# One command per task: `make test`, `make demo`, `make bench`. Works unattended (CI=true).
#
# The first target run creates $(VENV) with $(PYTHON) and installs the project (editable, with
# the dev extras) at the exact versions of the lock file. Later runs skip the install unless
# pyproject.toml or the lock file changed since (the stamp file is older than them), and
# recreate $(VENV) when PYTHON is another version than the one it was made with.
#
# Pick the Python with PYTHON, e.g. `make test PYTHON=python3.13`. Python 3.10 installs
# requirements-min.lock (every runtime dependency at the floor pyproject.toml declares); newer
# ones install requirements.lock. LOCK=... overrides that choice.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Empty when $(PYTHON) does not run; the install then stops with a message saying so.
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)
LOCK ?= $(if $(filter 3.10.%,$(PYTHON_VERSION)),requirements-min.lock,requirements.lock)
# Names the interpreter $(VENV) was made with: a different PYTHON makes it anew.
PY_MARK := $(VENV)/.python-$(or $(PYTHON_VERSION),missing)
STAMP := $(VENV)/.installed-$(notdir $(LOCK))
BENCH_ARGS ?=
# Options of the stores' bench (DuckDB, Delta, ClickHouse side by side), e.g. '--rows 100000'.
BENCH_STORES_ARGS ?=
# Options of Spark local mode beside DuckDB (1M rows by default), e.g. '--n 10000000'.
BENCH_SPARK_ARGS ?=
DEMO_ARGS ?=
# One pytest worker per core (pytest-xdist): the suite is mostly CPU-bound. `-n 0`: one process.
PYTEST_ARGS ?= -n auto
# `pytest` alone collects tests/ (testpaths); the packages are added so their doctests run too.
PYTEST_PATHS ?= tests metaxy_core metaxy_dagster example_project

# Never prompt, never nag: the same behaviour on a laptop and in CI.
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_NO_INPUT := 1

.DEFAULT_GOAL := help
.PHONY: help install lock test lint typecheck pytest bench demo clean distclean

help:
	@echo "make demo       start the example project in 'dagster dev' (http://127.0.0.1:3000)"
	@echo "make test       install, then lint, type-check and run the test suite"
	@echo "make bench      run the benchmarks (BENCH_ARGS, BENCH_STORES_ARGS, BENCH_SPARK_ARGS pass options)"
	@echo "make lint       ruff check ."
	@echo "make typecheck  mypy (strict; metaxy_core and metaxy_dagster)"
	@echo "make lock       rewrite the lock file (\$$LOCK) from the installed environment"
	@echo "make clean      remove caches and build output (keeps $(VENV))"
	@echo "make distclean  clean, and remove $(VENV)"

$(PY_MARK):
	@if [ -z "$(PYTHON_VERSION)" ]; then \
	  echo "'$(PYTHON)' does not run. Pick an installed Python 3.10 or newer, e.g." \
	    "make test PYTHON=python3.13" >&2; \
	  exit 1; \
	fi
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" \
	      = "$(PYTHON_VERSION)" ]; then :; \
	else \
	  if [ -d $(VENV) ]; then \
	    echo "$(VENV) was made with another Python; making it anew with $(PYTHON) ($(PYTHON_VERSION))"; \
	  fi; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	fi
	@rm -f $(VENV)/.python-* && touch $@

$(STAMP): pyproject.toml $(LOCK) $(PY_MARK)
	$(PY) -m pip install --progress-bar off -c $(LOCK) -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

lock: $(STAMP)
	@{ sed -n '/^#/p' $(LOCK); \
	   $(PY) -m pip freeze --exclude-editable | grep -v -i '^metaxy-dagster'; } > $(LOCK).tmp
	@mv $(LOCK).tmp $(LOCK)
	@touch $(STAMP)

# Lint, types and tests run in this order; the first failure stops the target.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_PATHS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_PATHS) $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)
	$(PY) -m bench.stores $(BENCH_STORES_ARGS)
	$(PY) -m bench.spark --out bench/results/spark.json $(BENCH_SPARK_ARGS)

# Generates the example clips if missing, then runs `dagster dev` until Ctrl-C.
# DEMO_ARGS='--port 3001' (see `python -m example_project.demo --help`).
demo: $(STAMP)
	$(PY) -m example_project.demo $(DEMO_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info $(VENV)/.installed-*
	find . -name '.venv*' -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
