# Set-up and everyday commands. Each target creates .venv on first use; `make` alone lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help demo test test-all lint test-slow test-gpu fuzz bench figures clean

help:  ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

PIP_EDITABLE := $(BIN)/pip install --quiet -e

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP_EDITABLE) .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP_EDITABLE) ".[test]"
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(PIP_EDITABLE) ".[bench]"
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(PIP_EDITABLE) ".[demo]"
	touch $@

demo: $(VENV)/.installed  ## create .venv, install, run the main example
	$(BIN)/python examples/demo.py

lint: $(VENV)/.installed-test  ## ruff check, ruff format --check and mypy over the package, tests, benchmarks, examples, scripts
	$(BIN)/ruff check convtranspose tests benchmarks examples scripts
	$(BIN)/ruff format --check convtranspose tests benchmarks examples scripts
	$(BIN)/mypy convtranspose

# XLA compiles a program for every configuration the jax and Flax tests meet. With its fusion
# emitters and LLVM's costly passes off, a compile takes a fifth of the time (0.03 against 0.15 s
# measured); the HLO, which is the engine's, is the same, and so are the results checked (the
# whole suite passes both ways). make test and make fuzz compile so; tests/test_xla_codegen.py
# reruns the strictest float16 test under XLA's defaults, and make test-all uses the defaults.
QUICK_XLA_FLAGS := --xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true

# Two pytest workers (pytest-xdist); tests/conftest.py's scheduler gives a worker one test and
# case on every engine at a time, or a chunk of golden cases (one XLA program per chunk).
test: lint  ## create .venv with every engine, lint, run the default test suite (two workers)
	XLA_FLAGS="$(QUICK_XLA_FLAGS)" $(BIN)/python -m pytest -q -n 2

test-all: $(VENV)/.installed-test  ## every golden case on every engine, slow tests included (no GPU), XLA's default flags
	CONVTRANSPOSE_ALL_CASES=1 $(BIN)/python -m pytest -q -n 2 -m "not gpu"

test-slow: $(VENV)/.installed-test  ## the slow tests (large sweeps)
	$(BIN)/python -m pytest -q -m slow

test-gpu: $(VENV)/.installed-test  ## the CUDA tests (on a machine with a GPU)
	$(BIN)/python -m pytest -q -m gpu


fuzz: $(VENV)/.installed-test  ## property tests at 10,000 examples each (hypothesis profile 'fuzz'); prints the counts (FUZZ_ARGS=...)
	rm -rf build/fuzz-counts
	HYPOTHESIS_PROFILE=fuzz CONVTRANSPOSE_EXAMPLE_COUNTS=build/fuzz-counts XLA_FLAGS="$(QUICK_XLA_FLAGS)" \
		$(BIN)/python -m pytest -q -m property -n 2 --durations=30 $(FUZZ_ARGS)

# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, where a machine sets them, pin OpenBLAS to older
# kernels (half speed on AVX-512 machines): the benchmark measures NumPy as shipped.
bench: $(VENV)/.installed-bench  ## side-by-side timings of every engine (BENCH_ARGS=...)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

figures: $(VENV)/.installed-demo  ## redraw docs/figures/*.png from the library's outputs (matplotlib)
	$(BIN)/python scripts/make_figures.py

clean:  ## remove .venv and build files
	rm -rf $(VENV) build *.egg-info .pytest_cache
