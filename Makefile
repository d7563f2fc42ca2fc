# The README's two commands:  make pipeline  (dvc repro)  and  make test  (pytest).
# Each creates the virtual environment first if it is missing or out of date.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1

.PHONY: install pipeline test

install: $(VENV)/.installed

# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

pipeline: install
	$(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)
