# `make demo` and `make test` each create .venv on first use and install mlxgeom into it:
# `demo` with only what the demo needs (the `demo` extra), `test` and `bench` with the `dev` extra.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed-demo
	$(PY) -m mlxgeom demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -n 2

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/bench_linalg.py
