# The README's commands. `make test` alone sets everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BASE   := $(VENV)/.installed-base
NATIVE := $(shell find csrc -type f 2>/dev/null) CMakeLists.txt pyproject.toml
JOBS   ?= 2

.PHONY: install native demo test test-fast bench report lint clean

install: $(STAMP)

# Idempotent: the venv is created once; the native build reruns when C++/CUDA sources change.
$(STAMP): $(NATIVE)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@command -v dot >/dev/null 2>&1 || ./scripts/install-graphviz.sh
	$(BIN)/python -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja numpy
	flock build.lock $(BIN)/python -m pip install -q --disable-pip-version-check --no-build-isolation -C cmake.define.NEEDLE_NO_CUDA=OFF -e ".[test]"
	@touch $(STAMP) $(BASE)

# What the demo needs and no more: the package and its C++ kernels (no CUDA build, no test tools).
# A later `make install`/`make test` rebuilds with CUDA and adds the test extras.
$(BASE): $(NATIVE)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@command -v dot >/dev/null 2>&1 || ./scripts/install-graphviz.sh
	$(BIN)/python -m pip install -q --disable-pip-version-check "scikit-build-core>=0.10" "pybind11>=2.12" cmake ninja numpy
	flock build.lock $(BIN)/python -m pip install -q --disable-pip-version-check --no-build-isolation -C cmake.define.NEEDLE_NO_CUDA=ON -e .
	@touch $(BASE)

# Rebuild the native extensions after editing csrc/ (serialised: helpers may run it concurrently).
native:
	@test -x $(BIN)/python || $(MAKE) install
	flock build.lock $(BIN)/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -C cmake.define.NEEDLE_NO_CUDA=OFF -e .
	@touch $(STAMP)

demo: $(BASE)
	$(BIN)/python -m needle_qc demo

test: install
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile tests

test-fast: install
	$(BIN)/python -m pytest -q -x -m "not slow" tests

bench: install
	$(BIN)/python benchmarks/run_all.py

report: install
	$(BIN)/python -m needle_qc report --out docs/report

lint: install
	$(BIN)/ruff check needle needle_qc tests benchmarks examples

clean:
	rm -rf build $(VENV) build.lock
