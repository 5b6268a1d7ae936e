# routeflow: `make demo` runs the rftest2 lab, `make test` runs the test suite.
# `make setup` installs everything (idempotent; root on Debian 12). `make lint` and
# `make test-unit` need only the virtualenv (`make setup-venv`) and run as any user.
PY := .venv/bin/python
PYTEST := $(PY) -m pytest -q -p no:cacheprovider
LAB ?= labs/rftest2.yaml

.PHONY: setup setup-system setup-venv setup-web demo test test-unit test-component test-e2e \
	test-web lint check docs

setup:
	@bash scripts/setup.sh

setup-system:
	@bash scripts/setup.sh system

setup-venv:
	@bash scripts/setup.sh venv

setup-web:
	@bash scripts/setup.sh web

demo: setup
	$(PY) -m routeflow.cli lab check $(LAB)
	$(PY) -m routeflow.cli lab up $(LAB)

lint: setup-venv
	$(PY) -m ruff check src tests
	$(PY) -m mypy

# Levels come from the folders (tests/conftest.py): unit runs as any user, component
# needs root and daemons, e2e builds labs. With CI=true a skipped test fails. `make test`
# runs ruff, then two parts at once (scripts/test.sh): component, web and e2e tests two
# files side by side (unique names; they mostly wait on daemons, timers and pings), and
# next to them, at nice 10, mypy and the unit tests on every core.
JOBS ?= auto
# tests/fuzz first: its one long atheris run then overlaps the many short tests.
UNIT := -m unit tests/fuzz tests/unit tests/web

test: setup
	JOBS=$(JOBS) bash scripts/test.sh

test-unit: setup-venv
	$(PYTEST) -n $(JOBS) $(UNIT)

test-component: setup
	$(PYTEST) -m component

test-e2e: setup
	$(PYTEST) -m e2e

test-web: setup
	$(PYTEST) tests/web

# The manual (mkdocs, docs/) into site/, warnings as errors; its reference pages are
# generated from the code. `make test` builds it too (tests/unit/docs).
docs: setup-venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

check: setup
	$(PY) -m routeflow.cli lab check $(LAB)
