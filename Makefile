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

sweep: $(STAMP)
	@echo "make sweep: the smoke study arrives with the study issue (#5); nothing to run yet." >&2
	@exit 2

bench: $(STAMP)
	$(PY) benchmarks/optimizer_step.py

clean:
	rm -rf $(VENV) .pytest_cache .torch_extensions
