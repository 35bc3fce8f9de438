# Thin wrappers: every target calls `python -m bench ...` or pytest inside .venv/.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.normbench-installed
ARGS ?=
RESULTS ?=

.PHONY: install bench bench-quick bench-pytest sample report test lint clean

install: $(STAMP)

# --system-site-packages: a GPU box keeps the CUDA torch (and jax) its interpreter already has.
$(STAMP): pyproject.toml bench/install.py $(wildcard bench/frameworks/*.py)
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m bench.install
	touch $(STAMP)

FULL := --preset full --mode forward --mode backward --mode train --layout NCHW --layout NHWC --edge

bench: install
	$(PY) -m bench run $(FULL) --report $(ARGS)

# The committed sample: a full CPU run and its report, linked from the README.
sample: install
	rm -rf results/sample reports/sample
	$(PY) -m bench run $(FULL) --device cpu --out results/sample/cpu.jsonl $(ARGS)
	$(PY) -m bench report results/sample/cpu.jsonl --out reports/sample

bench-quick: install
	$(PY) -m bench run --preset quick --report $(ARGS)

bench-pytest: install
	$(PY) -m pytest benchmarks -p no:cacheprovider --benchmark-only --benchmark-autosave --benchmark-save-data $(ARGS)

report: install
	$(PY) -m bench report $(RESULTS) $(ARGS)

# Three workers on 2 cores (whole test files, longest first: tests/conftest.py; most tests wait on
# worker processes, hangs and signals: from a fresh snapshot 10:56 with two, 10:10 with three; 8:02
# once the tests' runs all took a simulated 32 MiB cache, tests/conftest.py), then
# the tests that time the machine itself alone, collected only from the files that
# use the mark unless ARGS names tests (collecting every file imports torch, numba and triton: 15 s
# against 3). Exit code 5 (no test selected) of the second part is not a failure.
SERIAL_FILES = $(if $(filter tests%,$(ARGS)),,$(shell grep -l "pytest.mark.serial" tests/test_*.py))
test: install
	$(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder -m "not serial" $(ARGS)
	$(PY) -m pytest -m serial $(SERIAL_FILES) $(ARGS) || [ $$? -eq 5 ]

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
