# The README's commands. `make demo` and `make test` each set everything up from nothing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
UV := python3 -m uv
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export BENTOML_HOME ?= $(CURDIR)/.bentoml

.PHONY: setup servers demo test lint format ui mlflow-ui lock bench clean dagster-home

## setup: install uv if missing, then the locked environment into .venv
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) venv --quiet --allow-existing --python 3.11 $(VENV)
	$(UV) pip sync --quiet --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

## servers: what the tests start on loopback ports (redis-server, Debian's package), when missing
servers:
	@command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

## dagster-home: the instance config lives in $DAGSTER_HOME (Dagster reads it only there)
dagster-home:
	@mkdir -p "$(DAGSTER_HOME)"
	@cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

## demo: simulated data end to end on the embedded default (SQLite, local files)
demo: setup dagster-home
	$(PY) -m fraud_assets.cli demo

## test: lint, format check and the test suite
test: setup servers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

## ui: the Dagster UI on http://127.0.0.1:3000
ui: setup dagster-home
	$(VENV)/bin/dagster dev -w workspace.yaml

## mlflow-ui: the MLflow UI on http://127.0.0.1:5000
mlflow-ui: setup
	$(PY) -m fraud_assets.cli mlflow-ui

## lock: re-resolve requirements.lock after changing pyproject.toml
lock:
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes --universal --python-version 3.11 -o requirements.lock

bench: setup
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .dagster data .mlflow .bentoml
