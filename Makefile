# The two set-up commands of the README: `make sweep` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export DS_ACCELERATOR ?= cpu
# One JIT-extension cache per checkout, so DeepSpeed's ops build once (FIELD-NOTES).
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.torch_extensions

.PHONY: venv test test-unit sweep bench clean

venv: $(STAMP)

# torch first and alone: pip then takes the local CPU wheel instead of a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

# The smoke study on the embedded defaults: local Ray, SQLite MLflow store (./mlruns.db),
# tiny Llama on CPU. Re-running it continues the same study.
sweep: $(STAMP)
	$(VENV)/bin/qstudy sweep search_spaces/smoke.yaml

bench: $(STAMP)
	$(PY) benchmarks/optimizer_step.py
	$(PY) benchmarks/quantum_attention.py
	$(PY) benchmarks/trial_startup.py
	$(PY) benchmarks/study_overhead.py

clean:
	rm -rf $(VENV) .pytest_cache .torch_extensions
