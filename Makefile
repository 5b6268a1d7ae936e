# routeflow: `make demo` runs the rftest2 lab, `make test` runs the test suite.
# Both set everything up first (idempotent; needs root on Debian 12).
PY := .venv/bin/python
LAB ?= labs/rftest2.yaml

.PHONY: setup demo test test-unit test-e2e lint check clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m routeflow.cli lab check $(LAB)
	$(PY) -m routeflow.cli lab up $(LAB)

test: setup
	$(PY) -m ruff check src tests
	$(PY) -m pytest -q -p no:cacheprovider

test-unit: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-e2e: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/e2e

lint: setup
	$(PY) -m ruff check src tests

check: setup
	$(PY) -m routeflow.cli lab check $(LAB)
