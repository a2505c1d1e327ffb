# The README's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The plugin distributions shipped in this repository; each is a package of its own, installed beside the core.
PLUGINS := plugins/cma plugins/pymoo plugins/irt plugins/lm-eval plugins/ray plugins/wandb plugins/mlflow plugins/m2n2

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml Makefile $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: a CPU build lies on disk; an unpinned torch pulls several GB of CUDA wheels.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# The house rules, clean on the whole tree; .ci/run runs them before the tests. pyproject holds their settings:
# ruff (lint, and the format check) and mypy (the core and the shipped plugins, with pydantic's mypy plugin).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

demo: $(STAMP)
	$(VENV)/bin/mergekit-evo demo

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
