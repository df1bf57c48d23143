# The two commands that matter: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

SYSTEM := PYTHON=$(PYTHON) bash scripts/system-packages.sh

.PHONY: demo test validate bench dagster clean venv docs

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need Python 3.11 (python3.11 or python3) on PATH"; exit 1; }
	@$(SYSTEM) venv
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[emulator,test]'
	touch $(STAMP)

venv: $(STAMP)

# Chromium (PDF report, browser test) and a PostgreSQL server (production tests) come from the
# system package manager: installed when missing and this user may, else one line says what to do.
demo: $(STAMP)
	@$(SYSTEM) chromium
	$(BIN)/incident-metrics demo

# Both cores (pytest-xdist); --dist loadfile keeps each file's module fixtures in one worker, handed
# out longest first (tests/conftest.py orders them; --no-loadscope-reorder keeps that order).
test: $(STAMP)
	@$(SYSTEM) chromium postgresql
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

validate: $(STAMP)
	$(BIN)/python -m pipelines.scorecard --replications 1000 --seed 20261126 --out docs/validation.md

docs: $(STAMP)
	$(BIN)/python -m pipelines.dictionary

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

dagster: $(STAMP)
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home} ; mkdir -p $$DAGSTER_HOME ; \
	DAGSTER_HOME=$$DAGSTER_HOME $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) data .pytest_cache
