# Two-command quickstart: `make run` and `make test`. Everything else builds on the same .venv.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export QT_QPA_PLATFORM ?= offscreen
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run test lint typecheck imports pytest bench soak package bundle deb smoke screenshot clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@set -e; if [ ! -x $(PY) ]; then \
	  base=$$(scripts/pick-python); echo "creating $(VENV) with $$($$base -V)"; \
	  $$base -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: venv
	QT_QPA_PLATFORM= $(VENV)/bin/slipstream .

lint: venv
	$(VENV)/bin/ruff check app tests

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

pytest: venv
	timeout -k 10 1500 $(PY) -m pytest -q

test: lint imports typecheck pytest

bench: venv
	$(PY) -m tests.bench

soak: venv
	$(PY) -m tests.reliability.soak

clean:
	rm -rf build dist $(VENV)
