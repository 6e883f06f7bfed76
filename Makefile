# Two commands on a fresh clone: `make report` and `make test`.
# Both build .venv from requirements.lock first (Python >= 3.12; .python-version picks pyenv's 3.12).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Prefer an explicit 3.12 interpreter; fall back to python3 (pyenv resolves it through .python-version).
PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3)
# The locked versions are installed with uv (about 35 s on a fresh clone here, against pip's 113 s,
# most of it pip's one-at-a-time unpacking and byte-compiling); pip does it when uv is not to be had.
UV_VERSION := 0.13.9

# Keep the suite's cache, PyTensor's compile cache and matplotlib's state inside the checkout
# (make clean removes them); outside make the cache follows $CROSSCHECK_CACHE or XDG_CACHE_HOME.
export CROSSCHECK_CACHE ?= $(CURDIR)/.cache/crosscheck
export PYTENSOR_FLAGS ?= base_compiledir=$(CURDIR)/.cache/pytensor
export MPLBACKEND ?= Agg
# The reference samplers work with small matrices; BLAS threads only add overhead there.
export OPENBLAS_NUM_THREADS ?= 1
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib

.PHONY: help venv browser report test validate bench lint clean

help:
	@echo "make report    run every built-in case and write reports/index.html"
	@echo "make test      run the test suite (fast statistical checks included)"
	@echo "make validate  long statistical studies (tests marked slow)"
	@echo "make bench     benchmark scripts; ends with a table of the speed goals (nothing asserted)"

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml .python-version
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 12) else \
	  f"bayes-crosscheck needs Python >= 3.12, but {sys.executable} is {v.major}.{v.minor}. \
	Install 3.12 (pyenv install 3.12) or run make PYTHON=/path/to/python3.12")'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	@if $(PY) -m pip install --quiet --require-virtualenv uv==$(UV_VERSION); then \
	  echo "installing requirements.lock with uv $(UV_VERSION)"; \
	  install="$(VENV)/bin/uv pip install --quiet --python $(PY)"; compile=--compile-bytecode; \
	else \
	  echo "uv $(UV_VERSION) could not be installed; installing requirements.lock with pip"; \
	  install="$(PY) -m pip install --quiet --require-virtualenv"; compile=; \
	fi; \
	$$install $$compile -r requirements.lock && $$install --no-deps --no-build-isolation -e .
	touch $(STAMP)

# A disagreement (exit 1) or an inconclusive verdict (exit 3) is a finding the report shows, not
# a failure to build it; bad input (2) or a crash fails the target.
report: $(STAMP)
	@$(VENV)/bin/crosscheck report --out reports; code=$$?; \
	if [ $$code -eq 0 ]; then echo "every case agrees: reports/index.html"; \
	elif [ $$code -eq 1 ] || [ $$code -eq 3 ]; then \
	  echo "report written to reports/index.html; some verdicts are not 'agree' (exit $$code), see the index"; \
	else exit $$code; fi

# The report is checked in a real browser. Install Debian's headless Chromium where we can
# (root with apt-get, as on CI); elsewhere the browser test skips and says why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium for the browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	     chromium chromium-driver >/dev/null) || echo "chromium could not be installed; the browser test will skip"; \
	else echo "chromium is absent and cannot be installed here; the browser test will skip"; fi

# Test files run on two pytest-xdist workers (one per core here), a file's tests on one worker
# so that module fixtures are built once.
test: $(STAMP) browser
	$(PY) -m pytest -n 2 --dist loadfile

validate: $(STAMP)
	$(PY) -m pytest -m slow -p no:cacheprovider

# BENCH_ARGS passes options on, e.g. make bench BENCH_ARGS=--dense-slopes
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .cache reports
