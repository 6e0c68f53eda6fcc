# iris-gitops: every command a person or a pipeline runs is a target here.
# `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --require-virtualenv

DATA ?= data/v2/data.csv
ARTIFACTS ?= artifacts
MODEL_DIR := $(ARTIFACTS)/model
MODEL_SOURCES := $(wildcard model/*.py)

export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# --- environment ---------------------------------------------------------------------------

$(VENV)/.runtime: requirements/runtime.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --no-deps -r requirements/runtime.lock
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.lock
	$(PIP) install --quiet --no-deps -r requirements/dev.lock
	$(PIP) check
	touch $@

.PHONY: venv dev
venv: $(VENV)/.runtime ## create .venv with the pinned runtime (training + serving)
dev: $(VENV)/.dev ## add the pinned test and lint tools to .venv

.PHONY: lock
lock: ## re-resolve requirements/*.in into exact pins (see README, "Updating dependencies")
	$(PYTHON) scripts/lock.py

# --- model ---------------------------------------------------------------------------------

# Retrain whenever the data, the pinned libraries or the training code change.
$(MODEL_DIR)/metadata.json: $(DATA) requirements/runtime.lock $(MODEL_SOURCES) | $(VENV)/.runtime
	$(PY) -m model.train --data $(DATA) --out $(ARTIFACTS)

.PHONY: train
train: $(VENV)/.runtime ## train the model into artifacts/ (model/, metrics.json, confusion_matrix.png)
	$(PY) -m model.train --data $(DATA) --out $(ARTIFACTS)

.PHONY: data
data: $(VENV)/.runtime ## regenerate data/v1 and data/v2 from the copy scikit-learn ships
	$(PY) scripts/generate_data.py

# --- service -------------------------------------------------------------------------------

.PHONY: serve
serve: $(MODEL_DIR)/metadata.json ## serve the model on 127.0.0.1:8000 (gunicorn + uvicorn workers)
	IRIS_MODEL_DIR=$(MODEL_DIR) $(PY) -m service

# --- quality -------------------------------------------------------------------------------

.PHONY: test
test: $(VENV)/.dev ## run the whole test suite (sets up .venv itself)
	$(PY) -m pytest -n 2 --dist loadgroup

.PHONY: lint
lint: $(VENV)/.dev ## ruff, mypy and the manifest/workflow linters
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q tests/lint

.PHONY: clean
clean: ## remove the venv, artifacts and caches
	rm -rf $(VENV) $(ARTIFACTS) build .pytest_cache .mypy_cache .ruff_cache
