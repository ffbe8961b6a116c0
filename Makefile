# Two commands for a fresh machine; both set up .venv first (a few minutes: torch comes from pip's cache/disk).
#   make bench   -> python -m bench on the embedded default (trains it once, then reuses it)
#   make test    -> the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# Test files run two at a time (pytest-xdist, one file per worker: a file's fixtures are built once).
TEST_WORKERS ?= 2

.PHONY: setup bench test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[cpu,profile,dev,cluster]'
	touch $@

bench: setup
	$(PY) -m bench $(ARGS)

test: setup
	$(PY) -m pytest tests -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) results/runs
