# The whole set-up is `make workbook` (the main job) or `make test` (the tests); both run `make setup` first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done

.PHONY: setup test test-fast workbook lab bench clean

setup: $(STAMP)

# Order matters (../shared/notes/stack.md): torch from the local wheels first; then the project and its
# pinned extras; then basicsr without build isolation, so its build uses the torch already installed.
$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' \
	  || { echo "make setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.14.1 torchvision==0.29.1
	$(PIP) install --quiet -e '.[dev]'
	$(PIP) install --quiet --no-build-isolation basicsr==1.4.2
	$(PY) -c 'import gfpgan_debug, basicsr.utils, torch, onnxruntime, cv2; print("setup ok: torch", torch.__version__, "opencv", cv2.__version__)'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q --durations=15

test-fast: setup
	$(PY) -m pytest -q -m "not browser and not slow"

workbook: setup
	$(PY) -m gfpgan_debug.workbook --out build/workbook

lab: setup
	$(PY) -m gfpgan_debug.lab notebooks

bench: setup
	$(PIP) install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py --out build/bench

clean:
	rm -rf build
