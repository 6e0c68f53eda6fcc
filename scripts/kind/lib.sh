# Shared by the scripts in scripts/kind/ (sourced, not run): names, pinned versions and the
# functions that talk to the local kind cluster. Written for bash 3.2 too (macOS /bin/bash),
# which has no inherit_errexit: functions whose result a script needs set a variable
# instead of being called inside $(...), so a failing command inside them stops the script.
# The variables set here are read by the scripts that source this file.
# shellcheck shell=bash disable=SC2034

# The scripts set it before sourcing this file; repeated so that shellcheck, reading this
# file on its own, knows every pipeline here fails when any part of it does.
set -o pipefail

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${KIND_DIR}/../.." && pwd)"

# --- pinned upstream parts -------------------------------------------------------------------

# kind v0.27 is the first release whose node images read registry mirrors from
# /etc/containerd/certs.d, which is how the nodes pull the loop's images.
readonly KIND_MIN_VERSION="0.27.0"
# The default node image of kind v0.31.0, as its release notes list it: tags are reused
# across kind releases, the digest names the build made for that release. Kubernetes 1.35
# images run on cgroup v2 hosts only (the preflight checks).
readonly KIND_NODE_IMAGE="kindest/node:v1.35.0@sha256:452d707d4862f52530247495d180205e029056831160e22870e37e3f6c1ac31f"

readonly ARGOCD_VERSION="v3.5.1"
# The install manifest at the commit the v3.5.1 tag names, so the bytes cannot change
# under the recorded checksum.
readonly ARGOCD_COMMIT="109ca7ca71139e514114499d294a492e7910a965"
readonly ARGOCD_INSTALL_URL="https://raw.githubusercontent.com/argoproj/argo-cd/${ARGOCD_COMMIT}/manifests/install.yaml"
readonly ARGOCD_INSTALL_SHA256="795a3a972224da6a7f9d32c3e946445f062b60fb46028476715affeb688236e3"

# The HorizontalPodAutoscalers need CPU metrics; kind has no metrics-server of its own.
readonly METRICS_SERVER_URL="https://github.com/kubernetes-sigs/metrics-server/releases/download/v0.9.0/components.yaml"
readonly METRICS_SERVER_SHA256="1cec29a5267809306a2c6ec74a3e449abbb705b4a8beed0c8a1963910f72c79b"

# --- names -----------------------------------------------------------------------------------

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
PUSH_NAME="localhost:${REGISTRY_PORT}/${IMAGE_PATH}"
readonly DEPLOY_NAME="${IMAGE_HOST}/${IMAGE_PATH}"

# Argo CD pulls from a git daemon inside the cluster (scripts/kind/git-server.yaml); this
# machine pushes to it through a port-forward.
readonly GIT_NAMESPACE="iris-git"
readonly IN_CLUSTER_REPO_URL="git://git-server.${GIT_NAMESPACE}.svc.cluster.local/iris-gitops.git"

STATE_DIR="${KIND_STATE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/iris-gitops-kind/${KIND_CLUSTER}}"
# The clone whose main branch Argo CD deploys; kind-up recreates it from this checkout's HEAD.
WORK_REPO="${STATE_DIR}/repo"
STATE_FILE="${STATE_DIR}/state.env"
LOG_DIR="${STATE_DIR}/logs"
DOWNLOAD_DIR="${STATE_DIR}/downloads"
# Where the diagnostics bundle goes (diagnose.sh); build/ is ignored by git.
DIAGNOSTICS_DIR="${KIND_DIAGNOSTICS_DIR:-${REPO_ROOT}/build/kind-diagnostics}"
WAIT_SECONDS="${KIND_WAIT_SECONDS:-600}"
# A pod that cannot be scheduled, cannot pull or keeps crashing for this long ends the
# wait at once: none of these heal by waiting the full WAIT_SECONDS.
STUCK_SECONDS="${KIND_STUCK_SECONDS:-60}"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "${REPO_ROOT}/.venv/bin/python" ]]; then PYTHON="${REPO_ROOT}/.venv/bin/python"; else PYTHON=python3; fi
fi

readonly SAMPLE='{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}'

# --- messages and failure --------------------------------------------------------------------

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# The ERR trap of every script (with set -E, so functions have it too): names the command
# that failed and where, so a failed run says what broke even when the command itself
# printed nothing useful.
on_error() {
  local status="$1" command="$2" where="${FUNCNAME[1]:-main}"
  if [[ "${where}" == main ]]; then where=""; else where=", in ${where}"; fi
  printf '%s: error: exit %s at %s line %s%s from: %s\n' "${0##*/}" "${status}" \
    "${BASH_SOURCE[1]#"${REPO_ROOT}"/}" "${BASH_LINENO[0]}" "${where}" "${command}" >&2
}

k() { kubectl --context="${KUBE_CONTEXT}" "$@"; }

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "${tool}" >/dev/null 2>&1 || die "${tool} is not on PATH (docs/delivery.md, 'The loop on kind')"
  done
}

# retry ATTEMPTS COMMAND...: runs COMMAND until it succeeds, waiting 2, 4, 8 ... seconds
# (RETRY_DELAY, doubled each time) between attempts; returns the last exit status.
retry() {
  local attempts="$1" attempt=1 delay="${RETRY_DELAY:-2}" status=0
  shift
  while :; do
    status=0
    "$@" || status=$?
    ((status != 0)) || return 0
    if ((attempt >= attempts)); then
      log "giving up after ${attempts} attempts: $*"
      return "${status}"
    fi
    log "attempt ${attempt}/${attempts} failed (exit ${status}); retrying in ${delay}s: $*"
    sleep "${delay}"
    attempt=$((attempt + 1))
    delay=$((delay * 2))
  done
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# fetch_pinned URL SHA256 DEST: downloads URL to DEST unless DEST already has that checksum;
# a download with any other checksum is deleted and stops the script.
fetch_pinned() {
  local url="$1" want="$2" dest="$3" got
  if [[ -f "${dest}" ]]; then
    got="$(sha256_of "${dest}")"
    [[ "${got}" != "${want}" ]] || return 0
  fi
  mkdir -p "$(dirname "${dest}")"
  curl --fail --silent --show-error --location --retry 4 --retry-all-errors --max-time 120 \
    --output "${dest}.part" "${url}"
  got="$(sha256_of "${dest}.part")"
  if [[ "${got}" != "${want}" ]]; then
    rm -f "${dest}.part"
    die "${url} has sha256 ${got}, not the recorded ${want}: the upstream file changed; check it and update the checksum in scripts/kind/lib.sh"
  fi
  mv "${dest}.part" "${dest}"
}

# The GitOps tool and its dependencies, run on the work clone.
gitops() { (cd "${WORK_REPO}" && PYTHONPATH="${WORK_REPO}" "${PYTHON}" -m gitops "$@"); }

json_field() { "${PYTHON}" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- port-forwards (stopped when the script exits) --------------------------------------------

PF_PIDS=""
PF_PORT=""
PF_PID=""
# port_forward NAMESPACE TARGET REMOTE_PORT: starts a port-forward on a free local port and
# sets PF_PORT, and PF_PID to the kubectl process itself; returns 1, saying why, if it does
# not start. kubectl is started as a plain command, not through a function: a function in
# the background runs in a subshell, whose PID is not kubectl's, and killing that subshell
# would leave kubectl running.
port_forward() {
  local out deadline said
  out="$(mktemp)"
  kubectl --context="${KUBE_CONTEXT}" port-forward --namespace "$1" "$2" ":$3" --address 127.0.0.1 >"${out}" 2>&1 &
  PF_PID=$!
  PF_PIDS="${PF_PIDS} ${PF_PID}"
  deadline=$((SECONDS + 30))
  PF_PORT=""
  while :; do
    PF_PORT="$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9][0-9]*\) .*/\1/p' "${out}")"
    PF_PORT="${PF_PORT%%[!0-9]*}"
    [[ -z "${PF_PORT}" ]] || break
    if ! kill -0 "${PF_PID}" 2>/dev/null || ((SECONDS >= deadline)); then
      said="$(tr '\n' ' ' <"${out}")"
      log "port-forward to $2 in $1 did not start: ${said}"
      rm -f "${out}"
      stop_port_forward "${PF_PID}"
      return 1
    fi
    sleep 0.5
  done
  rm -f "${out}"
}

stop_port_forward() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local pid rest=""
  for pid in ${PF_PIDS}; do [[ "${pid}" == "$1" ]] || rest="${rest} ${pid}"; done
  PF_PIDS="${rest}"
}

stop_port_forwards() {
  local pid
  for pid in ${PF_PIDS}; do stop_port_forward "${pid}"; done
  PF_PIDS=""
}

# --- git -------------------------------------------------------------------------------------

# Runs a command with the in-cluster repository reachable as the work clone's remote "kind",
# through a port-forward of its own that is stopped afterwards. Called under retry, where
# errexit is off, so every step checks its own status.
with_git_remote() {
  port_forward "${GIT_NAMESPACE}" service/git-server 9418 || return 1
  local status=0
  git -C "${WORK_REPO}" remote remove kind 2>/dev/null || true
  git -C "${WORK_REPO}" remote add kind "git://127.0.0.1:${PF_PORT}/iris-gitops.git" || status=$?
  ((status != 0)) || "$@" || status=$?
  stop_port_forward "${PF_PID}"
  return "${status}"
}

# git_through_port_forward GIT-ARGS...: one git command against the remote "kind", retried
# with backoff, each attempt on a fresh port-forward (a broken one is the usual failure).
git_through_port_forward() {
  retry 4 with_git_remote git -C "${WORK_REPO}" "$@"
}

commit_all() {
  git -C "${WORK_REPO}" add --all
  git -C "${WORK_REPO}" -c user.name="iris kind loop" -c user.email="kind-loop@localhost" \
    -c commit.gpgsign=false commit --quiet -m "$1"
}

# add_kind_sizing CLONE: lists scripts/kind/sizing under `transformers:` in both overlays
# of CLONE, so everything there renders at the kind sizing.
add_kind_sizing() {
  local env file last
  for env in staging production; do
    file="$1/deploy/overlays/${env}/kustomization.yaml"
    if grep -q '^transformers:' "${file}"; then
      die "${file#"$1"/} already has transformers:; add ../../../scripts/kind/sizing to them in scripts/kind/lib.sh"
    fi
    last="$(tail -c 1 "${file}")"
    [[ -z "${last}" ]] || printf '\n' >>"${file}"
    printf '%s\n' '' '# kind only (scripts/kind/sizing): fit a 2-CPU node.' 'transformers:' \
      '  - ../../../scripts/kind/sizing' >>"${file}"
  done
}

# --- images ----------------------------------------------------------------------------------

registry_answers() { curl --silent --fail --max-time 3 --output /dev/null "http://127.0.0.1:${REGISTRY_PORT}/v2/"; }

# REGISTRY_DIGEST is set to the digest the registry serves for TAG (empty if it has none):
# the Docker-Content-Digest of the manifest, for every manifest type a push can produce.
registry_digest() {
  local headers
  headers="$(curl --silent --fail --max-time 10 --head \
    -H 'Accept: application/vnd.oci.image.index.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://127.0.0.1:${REGISTRY_PORT}/v2/${IMAGE_PATH}/manifests/$1" || true)"
  REGISTRY_DIGEST="$(tr -d '\r' <<<"${headers}" |
    sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *\(sha256:[0-9a-f]\{64\}\)$/\1/p')"
  REGISTRY_DIGEST="${REGISTRY_DIGEST%%[!a-z0-9:]*}"
}

# build_image REVISION TAG: builds the work clone with GIT_REVISION=REVISION as
# PUSH_NAME:TAG. The whole build log goes to the terminal and to LOG_DIR/build-TAG.log;
# KIND_BUILD_CACHE=<dir> keeps the build stage between runs (docker save/load), for
# machines whose Docker starts empty each time, like CI runners. PYTHON_IMAGE and
# DOCKER_NETWORK mean what they mean to `make image` (a substitute base, the build's network).
build_image() {
  local revision="$1" tag="$2" build_log cache_args=() build_args=()
  build_log="${LOG_DIR}/build-${tag}.log"
  mkdir -p "${LOG_DIR}"
  [[ -z "${PYTHON_IMAGE:-}" ]] || build_args+=(--build-arg "PYTHON_IMAGE=${PYTHON_IMAGE}")
  [[ -z "${DOCKER_NETWORK:-}" ]] || build_args+=(--network "${DOCKER_NETWORK}")
  if [[ -n "${KIND_BUILD_CACHE:-}" ]]; then
    if [[ -f "${KIND_BUILD_CACHE}/build-stage.tar" ]]; then
      log "loading the cached build stage from ${KIND_BUILD_CACHE}"
      docker load --input "${KIND_BUILD_CACHE}/build-stage.tar" >/dev/null ||
        log "the cached build stage did not load; building without it"
    fi
    # Inline cache metadata lets BuildKit reuse a loaded image; the classic builder needs
    # none. Both take --cache-from.
    cache_args=(--cache-from "${PUSH_NAME}:build-stage" --build-arg BUILDKIT_INLINE_CACHE=1)
  fi
  build_args+=(${cache_args[@]+"${cache_args[@]}"})
  log "building ${PUSH_NAME}:${tag} (log: ${build_log})"
  local status=0
  if [[ -n "${KIND_BUILD_CACHE:-}" ]]; then
    BUILDKIT_PROGRESS=plain docker build "${build_args[@]}" --target build \
      --tag "${PUSH_NAME}:build-stage" "${WORK_REPO}" 2>&1 | tee "${build_log}" >&2 || status=$?
  fi
  if ((status == 0)); then
    BUILDKIT_PROGRESS=plain docker build ${build_args[@]+"${build_args[@]}"} \
      --build-arg GIT_REVISION="${revision}" --tag "${PUSH_NAME}:${tag}" "${WORK_REPO}" 2>&1 |
      tee -a "${build_log}" >&2 || status=$?
  fi
  if ((status != 0)); then
    die "docker build of ${revision:0:12} failed (exit ${status}); the failing step and its output are above, the whole log is ${build_log}"
  fi
  if [[ -n "${KIND_BUILD_CACHE:-}" ]]; then
    mkdir -p "${KIND_BUILD_CACHE}"
    docker save --output "${KIND_BUILD_CACHE}/build-stage.tar.part" "${PUSH_NAME}:build-stage"
    mv "${KIND_BUILD_CACHE}/build-stage.tar.part" "${KIND_BUILD_CACHE}/build-stage.tar"
  fi
}

push_once() { docker push "${PUSH_NAME}:$1" >&2; }

# push_image TAG: pushes PUSH_NAME:TAG (retried with backoff) and sets IMAGE_REF to the
# reference the overlays take, DEPLOY_NAME:TAG@DIGEST, with the digest the registry
# serves for that tag, checked against the one Docker recorded for the push.
push_image() {
  local tag="$1" pushed
  retry 4 push_once "${tag}" || die "docker push ${PUSH_NAME}:${tag} failed 4 times; is the registry on 127.0.0.1:${REGISTRY_PORT} up?"
  registry_digest "${tag}"
  [[ -n "${REGISTRY_DIGEST}" ]] || die "the registry on 127.0.0.1:${REGISTRY_PORT} has no manifest for ${IMAGE_PATH}:${tag} after the push"
  pushed="$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "${PUSH_NAME}:${tag}")"
  pushed="$(sed -n "s|^${PUSH_NAME}@||p" <<<"${pushed}")"
  if ! grep -qx "${REGISTRY_DIGEST}" <<<"${pushed}"; then
    die "the registry serves ${IMAGE_PATH}:${tag} as ${REGISTRY_DIGEST}, but Docker pushed ${pushed:-nothing}"
  fi
  IMAGE_REF="${DEPLOY_NAME}:${tag}@${REGISTRY_DIGEST}"
}

# --- Argo CD ---------------------------------------------------------------------------------

# Makes Argo CD re-read the repository now instead of at its next 3-minute poll; "hard" also
# skips its cache of branch heads.
refresh_app() {
  k --namespace argocd annotate application "$1" argocd.argoproj.io/refresh=hard --overwrite >/dev/null 2>&1 || true
}

# What an Application says about itself: sync and health, the revision, its conditions,
# the last operation and every resource that is not Synced. Argo CD 3.x keeps resource
# health out of the Application status, so health comes from the resources themselves
# (diagnose.sh describes them).
describe_app() {
  local json
  if json="$(k --namespace argocd get application "$1" -o json 2>&1)"; then
    "${PYTHON}" "${KIND_DIR}/triage.py" application <<<"${json}" >&2 || true
  else
    log "application $1: ${json}"
  fi
}

# STUCK_* remember the problem seen at the previous poll, so a problem that persists ends
# the wait after STUCK_SECONDS.
STUCK_WHAT=""
STUCK_SINCE=0

# fail_if_stuck NAMESPACE APP: dies when the pods of NAMESPACE or the Application APP show
# the same problem (unschedulable, image pull, crash loop, an Argo CD error condition) for
# STUCK_SECONDS, with what to do about it.
fail_if_stuck() {
  local namespace="$1" app="$2" problems
  problems="$({
    k --namespace "${namespace}" get pods -o json 2>/dev/null | "${PYTHON}" "${KIND_DIR}/triage.py" pods || true
    k --namespace argocd get application "${app}" -o json 2>/dev/null | "${PYTHON}" "${KIND_DIR}/triage.py" errors || true
  })"
  if [[ -z "${problems}" || "${problems}" != "${STUCK_WHAT}" ]]; then
    STUCK_WHAT="${problems}"
    STUCK_SINCE=${SECONDS}
    return 0
  fi
  if ((SECONDS - STUCK_SINCE >= STUCK_SECONDS)); then
    describe_app "${app}"
    printf '%s\n' "${problems}" >&2
    die "${app}: the same problem for ${STUCK_SECONDS}s, stopping instead of waiting ${WAIT_SECONDS}s (see above)"
  fi
}

# wait_app NAME COMMIT: until the application is Synced and Healthy at that commit.
wait_app() {
  local name="$1" want="$2" namespace="${3:-}" state="" deadline=$((SECONDS + WAIT_SECONDS)) next_refresh=0
  STUCK_WHAT=""
  while :; do
    if ((SECONDS >= next_refresh)); then
      refresh_app "${name}"
      next_refresh=$((SECONDS + 30))
    fi
    state="$(k --namespace argocd get application "${name}" \
      -o jsonpath='{.status.sync.status} {.status.health.status} {.status.sync.revision}' 2>/dev/null || true)"
    if [[ "${state}" == "Synced Healthy ${want}" ]]; then
      log "${name}: Synced and Healthy at ${want:0:12}"
      return 0
    fi
    fail_if_stuck "${namespace:-argocd}" "${name}"
    if ((SECONDS >= deadline)); then
      describe_app "${name}"
      die "${name} is '${state:-not there}' after ${WAIT_SECONDS}s; want Synced Healthy at ${want:0:12}"
    fi
    sleep 5
  done
}

# deployed_image NAMESPACE: sets DEPLOYED_IMAGE to the image the Deployment names.
deployed_image() {
  DEPLOYED_IMAGE="$(k --namespace "$1" get deployment iris-api -o jsonpath='{.spec.template.spec.containers[0].image}' 2>/dev/null || true)"
}

# wait_image NAMESPACE DIGEST APP: until the Deployment names that digest and has rolled out.
wait_image() {
  local namespace="$1" digest="$2" app="$3" deadline=$((SECONDS + WAIT_SECONDS))
  STUCK_WHAT=""
  while :; do
    deployed_image "${namespace}"
    [[ "${DEPLOYED_IMAGE}" != *"@${digest}" ]] || break
    fail_if_stuck "${namespace}" "${app}"
    ((SECONDS < deadline)) || die "deployment/iris-api in ${namespace} runs ${DEPLOYED_IMAGE:-nothing}, not ${digest}"
    sleep 3
  done
  until k --namespace "${namespace}" rollout status deployment/iris-api --timeout=10s >/dev/null 2>&1; do
    fail_if_stuck "${namespace}" "${app}"
    ((SECONDS < deadline)) || die "deployment/iris-api in ${namespace} did not finish rolling out ${digest} in ${WAIT_SECONDS}s"
  done
  log "${namespace}: deployment/iris-api rolled out ${digest:0:19}..."
}

# smoke NAMESPACE REVISION: a prediction through the Service, answered by a pod of REVISION.
# Retried for a while: right after a rollout the port-forward may still pick a pod that is
# terminating (it serves until its preStop delay ends).
smoke() {
  local namespace="$1" revision="$2" deadline=$((SECONDS + 120)) body="" version="" species=""
  while :; do
    if ! port_forward "${namespace}" service/iris-api 80; then
      ((SECONDS < deadline)) || die "${namespace}: no port-forward to service/iris-api in 120s"
      sleep 3
      continue
    fi
    body="$(curl --silent --fail --max-time 5 -H 'Content-Type: application/json' \
      -d "${SAMPLE}" "http://127.0.0.1:${PF_PORT}/predict" || true)"
    version="$(curl --silent --fail --max-time 5 "http://127.0.0.1:${PF_PORT}/version" || true)"
    stop_port_forward "${PF_PID}"
    species="$(printf '%s' "${body}" | json_field species 2>/dev/null || true)"
    if [[ "${species}" == "setosa" && "${version}" == *"${revision}"* ]]; then
      log "${namespace}: POST /predict -> ${species}, served by revision ${revision:0:12}"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      die "${namespace}: want a setosa from revision ${revision}; /predict said '${body}', /version said '${version}'"
    fi
    sleep 3
  done
}

# A batch one row longer than the loop's config change allows (scripts/kind/loop.sh sets
# IRIS_MAX_BATCH_ROWS=2 in the base): 413 where that change runs, 200 where it does not.
readonly BATCH_OF_3="{\"instances\": [${SAMPLE}, ${SAMPLE}, ${SAMPLE}]}"

# wait_batch_answer NAMESPACE STATUS: until POST /predict/batch with three rows answers
# STATUS through the Service (retried: right after a rollout an old pod may still answer).
wait_batch_answer() {
  local namespace="$1" want="$2" deadline=$((SECONDS + 120)) got=""
  while :; do
    if port_forward "${namespace}" service/iris-api 80; then
      got="$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 5 \
        -H 'Content-Type: application/json' -d "${BATCH_OF_3}" \
        "http://127.0.0.1:${PF_PORT}/predict/batch" || true)"
      stop_port_forward "${PF_PID}"
      if [[ "${got}" == "${want}" ]]; then
        log "${namespace}: POST /predict/batch with 3 rows -> ${got}"
        return 0
      fi
    fi
    ((SECONDS < deadline)) || die "${namespace}: POST /predict/batch with 3 rows answered '${got}' for 120s, want ${want}"
    sleep 3
  done
}

# wait_smoke_test APP NAMESPACE COMMIT: until APP's last sync, of COMMIT, has Succeeded with
# its PostSync smoke test (deploy/release/job.yaml), then until the Job is gone (its
# hook-delete-policy deletes it on success). A failed smoke test fails the sync: it stops
# the wait at once with the Job's log.
wait_smoke_test() {
  local app="$1" namespace="$2" want="$3" deadline=$((SECONDS + WAIT_SECONDS)) state=""
  local path='{.status.operationState.phase} {.status.operationState.syncResult.revision} {range .status.operationState.syncResult.resources[?(@.name=="iris-api-smoke-test")]}{.hookType}={.hookPhase}{end}'
  while :; do
    state="$(k --namespace argocd get application "${app}" -o jsonpath="${path}" 2>/dev/null || true)"
    [[ "${state}" != "Succeeded ${want} PostSync=Succeeded" ]] || break
    if [[ "${state}" == "Failed ${want} "* || "${state}" == "Error ${want} "* ]]; then
      k --namespace "${namespace}" logs job/iris-api-smoke-test >&2 2>/dev/null || true
      describe_app "${app}"
      die "${app}: the sync of ${want:0:12} failed (${state}); the smoke test's log is above"
    fi
    ((SECONDS < deadline)) || die "${app}: last sync '${state:-none}' after ${WAIT_SECONDS}s; want Succeeded at ${want:0:12} with PostSync=Succeeded"
    sleep 3
  done
  # Argo CD deletes it as the operation ends; a minute is plenty.
  deadline=$((SECONDS + 60))
  until ! k --namespace "${namespace}" get job iris-api-smoke-test >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "${namespace}: job/iris-api-smoke-test passed but is still there after 60s (hook-delete-policy HookSucceeded)"
    sleep 2
  done
  log "${app}: the PostSync smoke test of ${want:0:12} passed and its Job was deleted"
}

# --- failure ---------------------------------------------------------------------------------

# The EXIT trap of the scripts that talk to the cluster: stops the port-forwards and, after
# a failure, writes the diagnostics bundle (diagnose.sh) while the cluster still shows why.
finish() {
  local status=$?
  trap - ERR
  set +e
  stop_port_forwards
  local clusters
  clusters="$(kind get clusters 2>/dev/null)"
  if ((status != 0)) && [[ -z "${KIND_NO_DIAGNOSE:-}" ]] && grep -qx "${KIND_CLUSTER}" <<<"${clusters}"; then
    log "collecting diagnostics into ${DIAGNOSTICS_DIR} (KIND_NO_DIAGNOSE=1 skips this)"
    "${KIND_DIR}/diagnose.sh" "${DIAGNOSTICS_DIR}" >/dev/null 2>&1
    [[ -f "${DIAGNOSTICS_DIR}/summary.txt" ]] && cat "${DIAGNOSTICS_DIR}/summary.txt" >&2
    log "diagnostics: ${DIAGNOSTICS_DIR} (summary.txt first)"
  fi
  exit "${status}"
}
