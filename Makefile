# riskgraph — `make` or `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install riskgraph with pinned dependencies (pip cache reused)

demo: install ## run the whole job on embedded defaults: generate, ingest, train, serve, replay, report
	$(VENV)/bin/riskgraph demo --out runs/demo/summary.json

lint: install ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy feature_stream gnn services

test: install ## install everything (Chromium too), start the real services, run every test (CI)
	$(MAKE) lint
	$(MAKE) policy-check
	bash deploy/chromium.sh install
	PY=$(abspath $(PY)) bash deploy/with-services.sh kafka neo4j redis opa -- $(VENV)/bin/pytest -q

policy-check: install ## opa fmt, opa check --strict, opa test with coverage >= 90%, Wasm build fresh
	bash deploy/opa.sh install
	PY=$(abspath $(PY)) bash policies/check.sh

policies: install ## recompile the Rego policies to Wasm (services/policy_bundle) after editing them
	bash deploy/opa.sh install
	PY=$(abspath $(PY)) bash policies/build.sh

services-up: install ## start Kafka, Neo4j, Redis and OPA on loopback (fetched/built on first use)
	bash deploy/services.sh up

services-down: ## stop the services deploy/ started
	bash deploy/services.sh down

services-status: ## which services are running and ready
	bash deploy/services.sh status

bench: install ## run the benchmarks (tables on stdout, JSON under runs/bench/)
	$(PY) bench/ingest.py --out runs/bench/ingest.json
	$(PY) bench/sampling.py --out runs/bench/sampling.json
	$(PY) bench/governance.py --out runs/bench/governance.json
	$(PY) bench/model.py --out runs/bench/model.json

bench-services: install ## benchmarks against the real services (Kafka, Neo4j, Redis started here)
	RISKGRAPH_JVM_FAST_START=0 PY=$(abspath $(PY)) bash deploy/with-services.sh kafka neo4j redis -- \
	  sh -c '$(PY) bench/stores.py --out runs/bench/stores.json && $(PY) bench/stream.py --out runs/bench/stream.json'

clean: ## remove build and run outputs (keeps .venv)
	rm -rf runs artifacts .pytest_cache .mypy_cache .ruff_cache .hypothesis

.PHONY: help install demo lint test policy-check policies services-up services-down services-status bench bench-services clean
