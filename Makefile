# Quick start: `make run` then `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench ui clean stop

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)  ## generate sample feeds if the landing zone is empty, run the whole pipeline
	$(BIN)/consent-center run

test: $(STAMP)  ## the whole default test suite (slow scale tests excluded)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## every benchmark (each checks its result, writes benchmarks/results/), then the README tables; CLIENTS=100000, IDENTITY_CLIENTS=20000 by default
	$(BIN)/python -m benchmarks.load_throughput --clients $${CLIENTS:-100000}
	$(BIN)/python -m benchmarks.validation_time --clients $${CLIENTS:-100000} --runs 2
	$(BIN)/python -m benchmarks.derivation --clients $${CLIENTS:-100000}
	$(BIN)/python -m benchmarks.identity_accuracy --clients $${IDENTITY_CLIENTS:-20000}
	$(BIN)/python -m benchmarks.report

ui: $(STAMP)
	$(BIN)/consent-center ui

stop: $(STAMP)
	$(BIN)/consent-center stop

clean:
	-$(BIN)/consent-center stop
	rm -rf .consent-center dbt_project/target dbt_project/logs
