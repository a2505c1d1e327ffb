# The README's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The plugin distributions shipped in this repository; each is a package of its own, installed beside the core.
PLUGINS := plugins/cma plugins/pymoo plugins/irt plugins/lm-eval plugins/ray plugins/wandb plugins/mlflow plugins/m2n2

.PHONY: install lock test check lint demo bench clean

# Every package at the version in the lock, so every machine runs what the tests ran; `make lock` refreshes it.
LOCK := requirements.lock
TORCH := torch==2.13.0
LOCK_VENV := .lock-venv

$(STAMP): pyproject.toml Makefile $(LOCK) $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: a CPU build lies on disk; an unpinned torch pulls several GB of CUDA wheels.
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e '.[test]' $(addprefix -e ,$(PLUGINS))
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

# The newest versions pyproject.toml's ranges allow, resolved in a fresh venv and frozen (torch is pinned above).
# Run it to take up new releases, then `make test`, and commit requirements.lock with the raised upper bounds.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet $(TORCH)
	$(LOCK_VENV)/bin/pip install --quiet -e '.[test]' $(addprefix -e ,$(PLUGINS))
	{ echo "# make lock: every package make install installs (beside $(TORCH) and the editable ones), for CPython"; \
	  echo "# $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version(), platform.machine())') on Linux; $$(date -u +%F)"; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > $(LOCK)
	rm -rf $(LOCK_VENV)

# Two workers (pytest-xdist; each computes on one thread, tests/conftest.py), the Ray tests all on one of them.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup --durations=25

# The two-minute loop: the house rules and the fast tier (the micro world and the fake merger and backend; no test
# on the 8-layer tiny world, none marked slow, none on a Ray instance).
check: lint
	$(PY) -m pytest -q -n 2 -m "not world and not slow and not ray"

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
