#!/usr/bin/env bash
# `make kind-preflight`: checks, in a few seconds, what the kind loop needs from this
# machine, and says what to change. It prints every problem it finds, then exits 1.
#
#   preflight.sh image     what building and pushing the image needs (docker, git, curl,
#                          the Docker engine's CPUs and memory, the registry port)
#   preflight.sh cluster   the rest: kind v0.27 or newer, kubectl, cgroup v2,
#                          cloud-provider-kind, the GitOps tool, a clone with history
#   preflight.sh           both (what make kind-up runs first)
#
# The loop fits 2 CPUs and 4 GiB for Docker (docs/delivery.md, "The loop on kind").
#
# Every function here is a check whose exit status is its answer, called in conditions on
# purpose; none needs errexit inside.
# shellcheck disable=SC2310
set -Eeuo pipefail
# bash 4.4+: a failure inside $(...) stops the script too. macOS's bash 3.2 lacks it, so
# lib.sh never relies on it (its functions set variables instead of printing results).
shopt -s inherit_errexit 2>/dev/null || true
# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'on_error "$?" "$BASH_COMMAND"' ERR

readonly MIN_CPUS=2
# Docker Desktop and Colima set to "4 GB" report a little less than 4096 MiB.
readonly MIN_MEMORY_MIB=3500

phase="${1:-all}"
case "${phase}" in
  image | cluster | all) ;;
  *) die "usage: preflight.sh [image|cluster|all]" ;;
esac

problems=()
problem() { problems+=("$*"); }

# version_at_least HAVE WANT: dotted numeric versions, compared field by field.
version_at_least() {
  local have="$1" want="$2" h w
  while [[ -n "${want}" ]]; do
    h="${have%%.*}" w="${want%%.*}"
    ((10#${h:-0} > 10#${w})) && return 0
    ((10#${h:-0} < 10#${w})) && return 1
    [[ "${have}" == *.* ]] && have="${have#*.}" || have=""
    [[ "${want}" == *.* ]] && want="${want#*.}" || want=""
  done
  return 0
}

have_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  problem "$1 is not on PATH: $2"
  return 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_image_side() {
  have_tool git "install git" || true
  have_tool curl "install curl" || true
  have_tool docker "install Docker (Docker Desktop, Colima or Docker Engine)" || return 0
  local info cpus memory
  if ! info="$(docker info --format '{{.NCPU}} {{.MemTotal}} {{.CgroupVersion}}' 2>&1)"; then
    problem "the Docker engine does not answer ('docker info': ${info##*$'\n'}): start Docker Desktop, 'colima start', or dockerd"
    return 0
  fi
  read -r cpus memory DOCKER_CGROUP <<<"${info}"
  memory=$((memory / 1024 / 1024))
  if ((cpus < MIN_CPUS)); then
    problem "Docker has ${cpus} CPU(s); the loop needs ${MIN_CPUS}: Docker Desktop: Settings > Resources > CPUs; Colima: colima start --cpu ${MIN_CPUS} --memory 4"
  fi
  if ((memory < MIN_MEMORY_MIB)); then
    problem "Docker has ${memory} MiB of memory; the loop needs 4 GiB: Docker Desktop: Settings > Resources > Memory; Colima: colima start --cpu ${MIN_CPUS} --memory 4"
  fi
  DOCKER_SUMMARY="Docker ${cpus} CPUs, ${memory} MiB"
  if ! registry_answers && port_in_use "${REGISTRY_PORT}"; then
    problem "127.0.0.1:${REGISTRY_PORT} is taken by something that is not a registry: set KIND_REGISTRY_PORT to a free port"
  fi
}

check_cluster_side() {
  if have_tool kind "install kind v${KIND_MIN_VERSION} or newer (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"; then
    local version
    version="$(kind version 2>/dev/null | sed -n 's/^kind v\([0-9][0-9.]*\).*/\1/p')"
    if [[ -z "${version}" ]] || ! version_at_least "${version}" "${KIND_MIN_VERSION}"; then
      problem "kind is ${version:-of an unknown version}; the loop needs v${KIND_MIN_VERSION} or newer (its nodes read registry mirrors from /etc/containerd/certs.d): install a newer kind"
    fi
    KIND_SUMMARY="kind ${version:-?}"
  fi
  have_tool kubectl "install kubectl (https://kubernetes.io/docs/tasks/tools/)" || true
  if [[ -n "${DOCKER_CGROUP:-}" && "${DOCKER_CGROUP}" != "2" ]]; then
    problem "the Docker host runs cgroup v${DOCKER_CGROUP}; the pinned node image (Kubernetes 1.35) needs cgroup v2: use a Linux with the unified cgroup hierarchy (systemd.unified_cgroup_hierarchy=1) or a current Docker Desktop"
  fi
  if [[ -z "${KIND_SKIP_LB_CHECK:-}" ]] && ! pgrep -f cloud-provider-kind >/dev/null 2>&1 &&
    [[ -z "$(docker ps --quiet --filter name=cloud-provider-kind 2>/dev/null || true)" ]]; then
    problem "cloud-provider-kind is not running, so the production LoadBalancer would never get an address: start it in another terminal (docs/delivery.md), or set KIND_SKIP_LB_CHECK=1 if something else provides LoadBalancers"
  fi
  if ! "${PYTHON}" -c 'import ruamel.yaml' 2>/dev/null; then
    problem "${PYTHON} cannot import the GitOps tool's dependencies: run 'make dev' (or set PYTHON)"
  fi
  if [[ "$(git -C "${REPO_ROOT}" rev-parse --is-shallow-repository 2>/dev/null || true)" == "true" ]]; then
    problem "this clone is shallow: run 'git fetch --unshallow' (the in-cluster repository needs the history)"
  fi
}

DOCKER_SUMMARY="" KIND_SUMMARY="" DOCKER_CGROUP=""
check_image_side
[[ "${phase}" == image ]] || check_cluster_side

if ((${#problems[@]} > 0)); then
  printf '%s: error: the kind loop cannot run here yet:\n' "${0##*/}" >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 1
fi
log "preflight (${phase}) ok: ${DOCKER_SUMMARY}${KIND_SUMMARY:+, ${KIND_SUMMARY}}"
