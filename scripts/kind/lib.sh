# Shared by the scripts in scripts/kind/ (sourced, not run): names, pinned versions and the
# functions that talk to the local kind cluster. Written for bash 3.2 too (macOS /bin/bash).
# The variables set here are read by the scripts that source this file.
# shellcheck shell=bash disable=SC2034

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$KIND_DIR/../.." && pwd)"

readonly ARGOCD_VERSION="v3.5.1"
# Server-side apply: the CRDs exceed the size of the annotation client-side apply writes.
readonly ARGOCD_INSTALL_URL="https://raw.githubusercontent.com/argoproj/argo-cd/${ARGOCD_VERSION}/manifests/install.yaml"

KIND_CLUSTER="${KIND_CLUSTER:-iris}"
KUBE_CONTEXT="kind-${KIND_CLUSTER}"
REGISTRY_CONTAINER="${KIND_REGISTRY_CONTAINER:-iris-kind-registry}"
# 5001, not 5000: macOS uses 5000 for AirPlay.
REGISTRY_PORT="${KIND_REGISTRY_PORT:-5001}"
# The overlays only accept Artifact Registry references (python -m gitops checks the host).
# This host has that shape but exists only inside the cluster: containerd on each node
# mirrors it to the local registry, so pods pull by digest exactly as on GKE.
readonly IMAGE_HOST="local-docker.pkg.dev"
readonly IMAGE_PATH="iris-kind/iris/iris-api"
readonly PUSH_NAME="localhost:${REGISTRY_PORT}/${IMAGE_PATH}"
readonly DEPLOY_NAME="${IMAGE_HOST}/${IMAGE_PATH}"

# Argo CD pulls from a git daemon inside the cluster (scripts/kind/git-server.yaml); this
# machine pushes to it through a port-forward.
readonly GIT_NAMESPACE="iris-git"
readonly IN_CLUSTER_REPO_URL="git://git-server.${GIT_NAMESPACE}.svc.cluster.local/iris-gitops.git"

STATE_DIR="${KIND_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/iris-gitops-kind/${KIND_CLUSTER}}"
# The clone whose main branch Argo CD deploys; kind-up recreates it from this checkout's HEAD.
WORK_REPO="${STATE_DIR}/repo"
STATE_FILE="${STATE_DIR}/state.env"
WAIT_SECONDS="${KIND_WAIT_SECONDS:-600}"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

readonly SAMPLE='{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}'

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

k() { kubectl --context="$KUBE_CONTEXT" "$@"; }

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH (docs/delivery.md, 'The loop on kind')"
  done
}

# The GitOps tool and its dependencies, run on the work clone.
gitops() { (cd "$WORK_REPO" && PYTHONPATH="$WORK_REPO" "$PYTHON" -m gitops "$@"); }

json_field() { "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- port-forwards (stopped when the script exits) --------------------------------------------

PF_PIDS=""
PF_PORT=""
# port_forward NAMESPACE TARGET REMOTE_PORT: starts a port-forward on a free local port and
# sets PF_PORT; PF_PID names the process.
port_forward() {
  local out
  out="$(mktemp)"
  k port-forward --namespace "$1" "$2" ":$3" --address 127.0.0.1 >"$out" 2>&1 &
  PF_PID=$!
  PF_PIDS="${PF_PIDS} ${PF_PID}"
  local deadline=$((SECONDS + 30))
  PF_PORT=""
  while [[ -z "$PF_PORT" ]]; do
    PF_PORT="$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "$out" | head -n1)"
    [[ -n "$PF_PORT" ]] && break
    if ! kill -0 "$PF_PID" 2>/dev/null; then
      cat "$out" >&2
      die "port-forward to $2 in $1 exited"
    fi
    ((SECONDS < deadline)) || die "port-forward to $2 in $1 did not start in 30s"
    sleep 0.5
  done
  rm -f "$out"
}

stop_port_forward() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

stop_port_forwards() {
  local pid
  for pid in $PF_PIDS; do stop_port_forward "$pid"; done
  PF_PIDS=""
}

# --- git -------------------------------------------------------------------------------------

# Runs a command with the in-cluster repository reachable as the work clone's remote "kind".
with_git_remote() {
  port_forward "$GIT_NAMESPACE" service/git-server 9418
  git -C "$WORK_REPO" remote remove kind 2>/dev/null || true
  git -C "$WORK_REPO" remote add kind "git://127.0.0.1:${PF_PORT}/iris-gitops.git"
  local status=0
  "$@" || status=$?
  stop_port_forward "$PF_PID"
  return "$status"
}

commit_all() {
  git -C "$WORK_REPO" add --all
  git -C "$WORK_REPO" -c user.name="iris kind loop" -c user.email="kind-loop@localhost" \
    -c commit.gpgsign=false commit --quiet -m "$1"
}

# --- images ----------------------------------------------------------------------------------

# build_and_push REVISION TAG: builds the work clone with GIT_REVISION=REVISION, pushes it to
# the local registry and prints the reference the overlays take (name:tag@digest).
build_and_push() {
  local revision="$1" tag="$2" repo_digest
  docker build --quiet --build-arg GIT_REVISION="$revision" --tag "${PUSH_NAME}:${tag}" "$WORK_REPO" >&2
  docker push --quiet "${PUSH_NAME}:${tag}" >&2
  repo_digest="$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "${PUSH_NAME}:${tag}" |
    grep -m1 "^${PUSH_NAME}@sha256:" || true)"
  [[ "$repo_digest" =~ @sha256:[0-9a-f]{64}$ ]] || die "could not read the pushed digest of ${PUSH_NAME}:${tag}"
  printf '%s:%s@%s\n' "$DEPLOY_NAME" "$tag" "${repo_digest#*@}"
}

# --- Argo CD ---------------------------------------------------------------------------------

# Makes Argo CD re-read the repository now instead of at its next 3-minute poll; "hard" also
# skips its cache of branch heads.
refresh_app() {
  k --namespace argocd annotate application "$1" argocd.argoproj.io/refresh=hard --overwrite >/dev/null 2>&1 || true
}

describe_app() {
  echo "--- application $1 ---" >&2
  k --namespace argocd get application "$1" \
    -o jsonpath='{.status.sync.status} {.status.health.status} {.status.sync.revision}{"\n"}{range .status.conditions[*]}{.type}: {.message}{"\n"}{end}{range .status.resources[*]}{.kind}/{.name}: {.status} {.health.status} {.health.message}{"\n"}{end}' >&2 || true
}

# wait_app NAME COMMIT: until the application is Synced and Healthy at that commit.
wait_app() {
  local name="$1" want="$2" state="" deadline=$((SECONDS + WAIT_SECONDS)) next_refresh=0
  while :; do
    if ((SECONDS >= next_refresh)); then
      refresh_app "$name"
      next_refresh=$((SECONDS + 30))
    fi
    state="$(k --namespace argocd get application "$name" \
      -o jsonpath='{.status.sync.status} {.status.health.status} {.status.sync.revision}' 2>/dev/null || true)"
    if [[ "$state" == "Synced Healthy ${want}" ]]; then
      log "${name}: Synced and Healthy at ${want:0:12}"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      describe_app "$name"
      die "${name} is '${state:-not there}' after ${WAIT_SECONDS}s; want Synced Healthy at ${want:0:12}"
    fi
    sleep 5
  done
}

deployed_image() {
  k --namespace "$1" get deployment iris-api -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true
}

# wait_image NAMESPACE DIGEST: until the Deployment names that digest and has rolled out.
wait_image() {
  local namespace="$1" digest="$2" deadline=$((SECONDS + WAIT_SECONDS))
  until [[ "$(deployed_image "$namespace")" == *"@${digest}" ]]; do
    ((SECONDS < deadline)) || die "deployment/iris-api in ${namespace} runs $(deployed_image "$namespace"), not ${digest}"
    sleep 3
  done
  k --namespace "$namespace" rollout status deployment/iris-api --timeout="${WAIT_SECONDS}s"
}

# smoke NAMESPACE REVISION: a prediction through the Service, answered by a pod of REVISION.
# Retried for a while: right after a rollout the port-forward may still pick a pod that is
# terminating (it serves until its preStop delay ends).
smoke() {
  local namespace="$1" revision="$2" deadline=$((SECONDS + 120)) body="" version="" species=""
  while :; do
    port_forward "$namespace" service/iris-api 80
    body="$(curl --silent --fail --max-time 5 -H 'Content-Type: application/json' \
      -d "$SAMPLE" "http://127.0.0.1:${PF_PORT}/predict" || true)"
    version="$(curl --silent --fail --max-time 5 "http://127.0.0.1:${PF_PORT}/version" || true)"
    stop_port_forward "$PF_PID"
    species="$(printf '%s' "$body" | json_field species 2>/dev/null || true)"
    if [[ "$species" == "setosa" && "$version" == *"$revision"* ]]; then
      log "${namespace}: POST /predict -> ${species}, served by revision ${revision:0:12}"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      die "${namespace}: want a setosa from revision ${revision}; /predict said '${body}', /version said '${version}'"
    fi
    sleep 3
  done
}
