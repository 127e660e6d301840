# One command per task: `make test`, `make demo`, `make bench`. Works unattended (CI=true).
#
# The first target run creates .venv and installs the project (editable, with the dev extras)
# at the exact versions of requirements.lock. Later runs skip the install unless
# pyproject.toml or requirements.lock changed since (the stamp file is
# older than them).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.metaxy-installed
BENCH_ARGS ?=
DEMO_ARGS ?=
PYTEST_ARGS ?=
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
	@echo "make bench      run the benchmark (BENCH_ARGS='...' to pass options)"
	@echo "make lint       ruff check ."
	@echo "make typecheck  mypy (strict; metaxy_core and metaxy_dagster)"
	@echo "make lock       rewrite requirements.lock from the installed environment"
	@echo "make clean      remove caches and build output (keeps $(VENV))"
	@echo "make distclean  clean, and remove $(VENV)"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml requirements.lock | $(PY)
	$(PY) -m pip install --progress-bar off -c requirements.lock -e '.[dev]'
	@touch $@

install: $(STAMP)

lock: $(STAMP)
	@{ echo "# Exact versions for reproducible installs: \`pip install -c requirements.lock -e '.[dev]'\`."; \
	   echo "# Regenerate with \`make lock\` (pip freeze of .venv, without the project itself)."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v -i '^metaxy-dagster'; } > requirements.lock.tmp
	@mv requirements.lock.tmp requirements.lock
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

# Generates the example clips if missing, then runs `dagster dev` until Ctrl-C.
# DEMO_ARGS='--port 3001' (see `python -m example_project.demo --help`).
demo: $(STAMP)
	$(PY) -m example_project.demo $(DEMO_ARGS)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info $(STAMP)
	find . -name '.venv*' -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
