# `make demo` and `make test` each create .venv on first use and install mlxgeom into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m mlxgeom demo

test: $(VENV)/.installed
	$(PY) -m pytest -n 2

bench: $(VENV)/.installed
	$(PY) benchmarks/bench_linalg.py
