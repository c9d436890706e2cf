# openvsm: `make lab` starts a VSM pair and VEMs on loopback and opens the CLI;
# `make test` runs lint, types and the whole test suite. Both bootstrap .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test lint types unit bootstrap system-deps bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ovs]'
	touch $(STAMP)

bootstrap: $(STAMP)

# Debian packages for the data-plane tests; skipped cleanly when not root.
system-deps:
	@bash scripts/system-deps.sh

lab: $(STAMP)
	$(BIN)/openvsm lab

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

types: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) system-deps lint types
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP) system-deps
	$(BIN)/python bench/failover.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
