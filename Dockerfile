# syntax=docker/dockerfile:1
#
# The Iris API image: a model trained inside this build, only the libraries that serve it,
# and the service. Build, run as the Deployment runs it and check (docs/deploy.md):
#
#   make image-test
#   docker build --build-arg GIT_REVISION="$(git rev-parse HEAD)" -t iris-api .
#
# Both stages start from PYTHON_IMAGE. Its default is python:3.11-slim-bookworm (Python
# 3.11.16), named by tag for people and by digest for the builder: the multi-arch index
# digest published for that tag by the Docker Official Images. Refresh both together
# (docs/deploy.md, "Updating the base image"). A builder that cannot reach Docker Hub
# passes a substitute built by scripts/offline-base.sh (Debian's Python 3.11.2).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b

# --- build: install the locks, train the model ---------------------------------------------
FROM ${PYTHON_IMAGE} AS build

# `make` runs the same targets here as on a developer's machine; it never
# reaches the runtime stage. Pinned to bookworm's version; if apt no longer
# offers it, take the one `apt-cache policy make` shows in the base image.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

WORKDIR /src

# The locks alone first, so the slow installs are cached until a lock changes. Two venvs:
# `make venv` puts the train set (the serve set plus pandas and matplotlib) in .venv, which
# trains and stays in this stage; `make venv-serve` puts the serve set alone in /opt/venv,
# the only environment the runtime stage copies. Both are hashed, wheels-only installs
# ending in `pip check`, and the locks pin every shared package identically, so the model
# is loaded by the very scikit-learn, numpy and joblib that trained it.
COPY Makefile ./
COPY requirements/train.lock requirements/serve.lock requirements/
RUN make venv \
    && make venv-serve VENV=/opt/venv

# Train with the exact command `make train` runs. A failed quality gate exits
# non-zero and so fails the build. SOURCE_DATE_EPOCH, when given, pins the
# recorded training time.
ARG SOURCE_DATE_EPOCH
COPY model/ model/
COPY data/ data/
RUN make train

# --- runtime: no compilers, no build tools, a fixed non-root user -------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# Fixed IDs: the Deployment's securityContext names the same numbers.
RUN groupadd --system --gid 10001 iris \
    && useradd --system --uid 10001 --gid iris --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin iris

# IRIS_HOST: listen on every interface of the container (the default is loopback).
# IRIS_METRICS_DIR: the only path the service writes; the Deployment mounts an
# emptyDir on /tmp, so the root filesystem can stay read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IRIS_HOST=0.0.0.0 \
    IRIS_PORT=8000 \
    IRIS_MODEL_DIR=/app/artifacts/model \
    IRIS_METRICS_DIR=/tmp/iris-metrics

WORKDIR /app

COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/artifacts/model artifacts/model
COPY --from=build /src/model model/
COPY service/ service/
# Compile now: at run time the root filesystem is read-only. Then load the artifact with the
# code and the serve set that will serve it, so a model this environment cannot load fails
# the build instead of the rollout.
RUN python -m compileall -q model service \
    && python -c 'import pathlib, model.artifact; model.artifact.load(pathlib.Path("artifacts/model"))'

EXPOSE 8000

# For `docker run`; Kubernetes ignores it and uses the Deployment's probes.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('IRIS_PORT', '8000') + '/livez', timeout=2)"]

# Last, so a new revision rebuilds only these layers.
ARG GIT_REVISION=unknown
ARG VERSION=1.0.0
ARG SOURCE_URL=https://github.com/your-org/iris-gitops
LABEL org.opencontainers.image.title="iris-api" \
    org.opencontainers.image.description="Iris species classifier served over HTTP" \
    org.opencontainers.image.licenses="Apache-2.0" \
    org.opencontainers.image.source="${SOURCE_URL}" \
    org.opencontainers.image.revision="${GIT_REVISION}" \
    org.opencontainers.image.version="${VERSION}"
# Shown by GET /version, so a running pod names the commit it was built from.
ENV IRIS_GIT_REVISION=${GIT_REVISION}

USER 10001:10001

# The one start command, the same as `make serve`: gunicorn with uvicorn
# workers, configured from IRIS_* settings (service/__main__.py).
CMD ["python", "-m", "service"]
