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

# Every install takes exactly what a lock names: hashes required, wheels only, no resolver.
# Each lock is closed under its own dependencies (tests/test_locks.py), and `pip check`
# proves it after every install.
PIP_INSTALL := $(PIP) install --require-hashes --only-binary=:all: --no-deps

# .venv for training and serving on this machine: the train set (the serve set plus pandas
# and matplotlib). The image trains with the same lock and ships only the serve set.
$(VENV)/.runtime: requirements/train.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing requirements/train.lock into $(VENV) (about a minute the first time)"
	$(PIP_INSTALL) --progress-bar off -r requirements/train.lock
	$(PIP) check
	touch $@

# The serving set alone: what the image's /opt/venv holds (make venv-serve VENV=/opt/venv).
$(VENV)/.serve: requirements/serve.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --quiet -r requirements/serve.lock
	$(PIP) check
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.lock
	@echo "installing requirements/dev.lock (test and lint tools) into $(VENV)"
	$(PIP_INSTALL) --progress-bar off -r requirements/dev.lock
	$(PIP) check
	touch $@

.PHONY: venv venv-serve dev
venv: $(VENV)/.runtime ## create .venv with the pinned train set (training + serving)
venv-serve: $(VENV)/.serve ## create $$(VENV) with the pinned serve set only (what the image ships)
dev: $(VENV)/.dev ## add the pinned test and lint tools to .venv

.PHONY: lock
lock: $(VENV)/.dev ## re-resolve requirements/*.in into exact, hashed pins (README, "Updating dependencies")
	$(PY) scripts/lock.py

# --- model ---------------------------------------------------------------------------------

# Retrain whenever the data, the pinned libraries or the training code change.
$(MODEL_DIR)/metadata.json: $(DATA) requirements/train.lock $(MODEL_SOURCES) | $(VENV)/.runtime
	$(PY) -m model.train --data $(DATA) --out $(ARTIFACTS)

.PHONY: train
train: $(VENV)/.runtime ## train the model into artifacts/ (model/, metrics.json, confusion_matrix.png)
	$(PY) -m model.train --data $(DATA) --out $(ARTIFACTS)

.PHONY: data
data: $(VENV)/.runtime ## regenerate data/v1 and data/v2 from the copy scikit-learn ships
	$(PY) scripts/generate_data.py

# --- service -------------------------------------------------------------------------------

# IRIS_MODEL_DIR, when set, is served as it is. Otherwise artifacts/model is retrained when
# the training code or the lock changed (the rule above) or when it was trained on other
# data than DATA (`make train DATA=data/v1/data.csv`, then `make serve`, serves v2 again).
.PHONY: serve
ifdef IRIS_MODEL_DIR
serve: $(VENV)/.runtime ## serve the model on 127.0.0.1:8000 (gunicorn + uvicorn workers)
	IRIS_MODEL_DIR="$(IRIS_MODEL_DIR)" $(PY) -m service
else
serve: $(MODEL_DIR)/metadata.json
	$(PY) -m model.train --data $(DATA) --out $(ARTIFACTS) --if-changed
	IRIS_MODEL_DIR=$(MODEL_DIR) $(PY) -m service
endif

# --- image (docs/deploy.md) ----------------------------------------------------------------

IMAGE ?= iris-api:local
# Empty: the Dockerfile's default, python:3.11-slim-bookworm pinned by digest. A builder that
# cannot reach Docker Hub passes the substitute `make offline-base` builds:
#   make image-test PYTHON_IMAGE=iris-offline-base:bookworm
PYTHON_IMAGE ?=
OFFLINE_BASE ?= iris-offline-base:bookworm
# The build's RUN steps use the builder's own network: where the only way out is the host's
# (a proxy, a mirror, no bridge), nothing else reaches PyPI; elsewhere it changes nothing.
# DOCKER_NETWORK= (empty) leaves Docker's default.
DOCKER_NETWORK ?= host
GIT_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# The commit time, recorded as the training time: the same commit trains the same model.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
# Read once, so the build and its test name the same commit even if HEAD moves meanwhile.
GIT_REVISION := $(GIT_REVISION)
SOURCE_DATE_EPOCH := $(SOURCE_DATE_EPOCH)

.PHONY: offline-base image image-test
offline-base: ## build iris-offline-base:bookworm, a substitute base for builders without Docker Hub (root; FORCE=1 rebuilds)
	scripts/offline-base.sh $(if $(FORCE),--force) $(OFFLINE_BASE)

image: ## docker build iris-api:local (IMAGE=, PYTHON_IMAGE=<base>, DOCKER_NETWORK=host)
	docker build $(if $(DOCKER_NETWORK),--network $(DOCKER_NETWORK)) \
		$(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) \
		--build-arg GIT_REVISION=$(GIT_REVISION) \
		$(if $(SOURCE_DATE_EPOCH),--build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH)) \
		--tag $(IMAGE) .

image-test: image ## build, run the image as the Deployment does and check it (scripts/smoke-container.sh)
	scripts/smoke-container.sh $(IMAGE) $(GIT_REVISION)

# --- deploy --------------------------------------------------------------------------------

# The overlay renderer: KUSTOMIZE if given (e.g. KUSTOMIZE="kustomize build"), else what
# scripts/find-kustomize.sh picks: kustomize 5.8.1 (what Argo CD v3.5.1 bundles), one it
# installed into $(VENV)/bin before, or kubectl kustomize; with none of them it installs the
# pinned kustomize into $(VENV)/bin (checksum-verified) and says so.
KUSTOMIZE ?=
RENDERER = render='$(KUSTOMIZE)'; [ -n "$$render" ] || render="$$(scripts/find-kustomize.sh $(VENV)/bin)"
OVERLAYS := staging production

# Renders into a temporary directory first, so a failed render leaves the old files as they were.
.PHONY: manifests
manifests: ## render each overlay to build/manifests/<env>.yaml, to read and diff
	@$(RENDERER); tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	for env in $(OVERLAYS); do $$render deploy/overlays/$$env > "$$tmp/$$env.yaml"; done; \
	mkdir -p build/manifests; \
	for env in $(OVERLAYS); do mv "$$tmp/$$env.yaml" build/manifests/$$env.yaml; echo "build/manifests/$$env.yaml"; done

# The plain Prometheus copy of the SLO rules, for promtool (tests/monitoring checks it is current).
.PHONY: rules
rules: $(VENV)/.dev ## rewrite monitoring/prometheus-rules.yaml from deploy/base/rules.yaml
	$(PY) scripts/sync_rules.py

# scripts/gitops.sh runs the tool in .venv-gitops, built from requirements/gitops.lock
# (ruamel.yaml only, seconds) on first use: status needs neither .venv nor the dev tools.
.PHONY: status
status: ## which image each environment runs, and the commit that set it
	scripts/gitops.sh status

# --- clusters (docs/delivery.md) -----------------------------------------------------------

# Options go through the environment or ARGS, e.g.
#   make gke-bootstrap GCP_PROJECT_ID=my-project GITHUB_OWNER=me ARGS=--dry-run
.PHONY: gke-bootstrap gke-teardown
gke-bootstrap: ## create the GKE cluster, registry, Workload Identity and Argo CD (ARGS=--dry-run to print)
	scripts/gke-bootstrap.sh $(ARGS)
gke-teardown: ## delete what gke-bootstrap created (ARGS=--dry-run to print)
	scripts/gke-teardown.sh $(ARGS)

# The kind loop (docs/delivery.md, "The loop on kind"); kind-up runs kind-preflight and
# kind-image itself, first.
.PHONY: kind-preflight kind-image kind-up kind-loop kind-diagnose kind-down
kind-preflight: ## check in seconds what the kind loop needs (Docker CPUs and memory, kind >= 0.27, ...)
	scripts/kind/preflight.sh
kind-image: ## build the image of HEAD and push it to the kind registry (kind-up's first step)
	scripts/kind/image.sh
kind-up: $(VENV)/.dev ## local kind cluster + Argo CD deploying this commit through GitOps
	scripts/kind/up.sh
kind-loop: $(VENV)/.dev ## on the kind cluster: release, base change, gated promotion, smoke tests, hold, reverts
	scripts/kind/loop.sh
kind-diagnose: $(VENV)/.dev ## write the kind diagnostics bundle to build/kind-diagnostics
	scripts/kind/diagnose.sh
kind-down: ## delete the kind cluster, its registry and work clone
	scripts/kind/down.sh

# --- performance and reliability (docs/performance.md, docs/reliability.md) ----------------

BENCH_VENV ?= .venv-bench

# MLServer pins its own FastAPI, so it gets a venv of its own, never .venv.
$(BENCH_VENV)/.installed: requirements/bench.lock
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip --disable-pip-version-check --require-virtualenv \
		install --quiet --require-hashes --only-binary=:all: --no-deps -r requirements/bench.lock
	$(BENCH_VENV)/bin/python -m pip --disable-pip-version-check check
	touch $@

.PHONY: wrk
wrk:
	@command -v wrk >/dev/null || { \
		echo "wrk is missing: installing it with 'apt-get install -y wrk'"; \
		if [ "$$(id -u)" -ne 0 ]; then echo "not root: run 'sudo apt-get install -y wrk' yourself" >&2; exit 2; fi; \
		apt-get install -y wrk || { apt-get update && apt-get install -y wrk; }; }

.PHONY: bench
bench: $(VENV)/.runtime $(MODEL_DIR)/metadata.json $(BENCH_VENV)/.installed wrk ## service vs raw ASGI, tutorial/tidy FastAPI, MLServer (BENCH_* knobs: docs/performance.md)
	IRIS_MODEL_DIR=$(MODEL_DIR) $(PY) -m bench

.PHONY: reliability
reliability: $(VENV)/.dev $(MODEL_DIR)/metadata.json ## load, shutdown, crash, bad-artifact, hostile-input and GitOps scenarios (~3.5 min; JSON + PNG)
	IRIS_MODEL_DIR=$(MODEL_DIR) $(PY) -m reliability

# --- quality -------------------------------------------------------------------------------

.PHONY: test
test: $(VENV)/.dev ## run the whole test suite (sets up .venv itself)
	@$(RENDERER); echo "rendering overlays with: $$render"; \
	KUSTOMIZE="$$render" GITOPS_KUSTOMIZE="$${GITOPS_KUSTOMIZE:-$$render}" \
		$(PY) -m pytest -n 2 --dist loadgroup

.PHONY: lint
lint: $(VENV)/.dev ## ruff, mypy and the manifest/workflow linters
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/yamllint --strict .
	$(VENV)/bin/hadolint --no-color Dockerfile
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/actionlint
	$(VENV)/bin/shellcheck scripts/*.sh scripts/*/*.sh .ci/run

.PHONY: clean
clean: ## remove the venv, artifacts and caches
	rm -rf $(VENV) $(ARTIFACTS) build .pytest_cache .mypy_cache .ruff_cache
