# Two commands for a fresh machine; both set up .venv first (a few minutes: torch comes from pip's cache/disk).
#   make bench   -> python -m bench on the embedded default (trains it once, then reuses it)
#   make test    -> the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# Test files run two at a time (pytest-xdist, one file per worker: a file's fixtures are built once).
TEST_WORKERS ?= 2

.PHONY: setup bench test lint clean gpu-check

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

# make gpu-check OUT=DIR [WHEELS=DIR]: every CUDA path in one command of at most 8 minutes (docs/gpu.md); without
# CUDA, the same steps as a dry run on CPU. It uses the machine's own torch: .venv's python where there is one, else
# $(PYTHON); it installs nothing but the carried wheels, unpacked into a scratch folder. More options: GPU_CHECK_ARGS.
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
gpu-check:
	@test -n "$(OUT)" || { echo "error: make gpu-check needs OUT=DIR" >&2; exit 2; }
	$(GPU_PYTHON) -m bench.tools.gpu_check --out "$(OUT)" $(if $(WHEELS),--wheels "$(WHEELS)") $(GPU_CHECK_ARGS)
