# Two-command quickstart: `make run` and `make test`. Everything else builds on the same .venv.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export QT_QPA_PLATFORM ?= offscreen
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: run test lint typecheck imports pytest bench soak package bundle deb smoke screenshot clean venv deps deps-run

venv: $(STAMP)

$(STAMP): pyproject.toml
	@set -e; if [ ! -x $(PY) ]; then \
	  base=$$(scripts/pick-python); echo "creating $(VENV) with $$($$base -V)"; \
	  $$base -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The Debian packages Qt needs (and Xvfb for the tests): installed when missing (root, or sudo -n),
# else the exact command to run is printed and make stops (app/ui/preflight.py).
deps: venv
	@$(PY) -m app.ui.preflight --ensure test

deps-run: venv
	@$(PY) -m app.ui.preflight --ensure run

run: deps-run
	QT_QPA_PLATFORM= $(VENV)/bin/slipstream .

lint: venv
	$(VENV)/bin/ruff check app tests
	$(VENV)/bin/ruff format --check app tests

typecheck: venv
	$(VENV)/bin/mypy

imports: venv
	$(VENV)/bin/lint-imports

pytest: deps
	timeout -k 10 1500 $(PY) -m pytest -q

test: deps lint imports typecheck pytest

bench: venv
	$(PY) -m tests.bench

soak: venv
	$(PY) -m tests.reliability.soak

clean:
	rm -rf build dist $(VENV)

# ---- packaging (packaging/README.md): PyInstaller one-folder bundle, .deb, .tar.gz, installed smoke
.PHONY: package-smoke
PKG_STAMP := $(VENV)/.installed-package
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
DEB_ARCH = $(shell dpkg --print-architecture 2>/dev/null || uname -m)

$(PKG_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[package]'
	@touch $(PKG_STAMP)

bundle: $(PKG_STAMP)
	$(PY) -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
	  packaging/slipstream.spec
	@du -sh dist/slipstream

deb:
	@test -x dist/slipstream/slipstream || $(MAKE) bundle
	rm -f dist/slipstream_*.deb
	$(PY) packaging/build_deb.py --bundle dist/slipstream --out dist

package: bundle deb
	rm -f dist/slipstream-*.tar.gz
	tar -C dist --transform 's,^slipstream,slipstream-$(VERSION),' -czf \
	  dist/slipstream-$(VERSION)-linux-$(DEB_ARCH).tar.gz slipstream
	@ls -la dist/*.deb dist/*.tar.gz

package-smoke:
	PY=$(PY) bash packaging/ci_smoke.sh

screenshot:
	xvfb-run -a -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb timeout -k 5 60 \
	  dist/slipstream/slipstream --smoke --screen --screenshot $(or $(OUT),dist/screenshot.png)
