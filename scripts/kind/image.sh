#!/usr/bin/env bash
# `make kind-image`: the first half of `make kind-up`, run before any cluster exists so a
# broken build fails in the first minutes:
#
#   1. preflight (image side)
#   2. a clone of this checkout's HEAD in the work directory (committed changes only)
#   3. docker build of it, the whole log shown and kept (logs/build-<tag>.log)
#   4. the local registry (a registry:2 container on 127.0.0.1:KIND_REGISTRY_PORT, unless a
#      registry already answers there), docker push with retries, and the digest read back
#      from the registry
#   5. the reference recorded for kind-up and kind-loop, and printed on stdout:
#      local-docker.pkg.dev/iris-kind/iris/iris-api:sha-<commit>@sha256:<digest>
#
# Running it again for the same commit reuses the pushed image when the registry still
# serves it.
set -Eeuo pipefail
# bash 4.4+: a failure inside $(...) stops the script too. macOS's bash 3.2 lacks it, so
# lib.sh never relies on it (its functions set variables instead of printing results).
shopt -s inherit_errexit 2>/dev/null || true
# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'on_error "$?" "$BASH_COMMAND"' ERR

"${KIND_DIR}/preflight.sh" image

source_sha="$(git -C "${REPO_ROOT}" rev-parse HEAD)"
tag="sha-${source_sha:0:12}"

log "preparing ${WORK_REPO} from ${source_sha:0:12}"
rm -rf "${WORK_REPO}"
mkdir -p "${WORK_REPO}"
git -C "${WORK_REPO}" init --quiet
git -C "${WORK_REPO}" fetch --quiet "${REPO_ROOT}" "${source_sha}"
git -C "${WORK_REPO}" checkout --quiet -B main FETCH_HEAD

# shellcheck disable=SC2310 # a predicate: one curl, its status is the answer
if ! registry_answers; then
  docker rm --force "${REGISTRY_CONTAINER}" >/dev/null 2>&1 || true
  log "starting the local registry ${REGISTRY_CONTAINER} on 127.0.0.1:${REGISTRY_PORT}"
  docker run --detach --restart=always --publish "127.0.0.1:${REGISTRY_PORT}:5000" \
    --network bridge --name "${REGISTRY_CONTAINER}" registry:2 >/dev/null
  deadline=$((SECONDS + 30))
  # shellcheck disable=SC2310 # as above
  until registry_answers; do
    ((SECONDS < deadline)) || die "the registry container ${REGISTRY_CONTAINER} does not answer on 127.0.0.1:${REGISTRY_PORT} after 30s (docker logs ${REGISTRY_CONTAINER})"
    sleep 1
  done
fi

recorded_ref=""
if [[ -f "${STATE_FILE}" ]]; then
  recorded_ref="$(sed -n "s/^REF_A=//p" "${STATE_FILE}")"
fi
registry_digest "${tag}"
if [[ -n "${REGISTRY_DIGEST}" && "${recorded_ref}" == "${DEPLOY_NAME}:${tag}@${REGISTRY_DIGEST}" ]]; then
  log "reusing ${recorded_ref}: the registry still serves it"
  IMAGE_REF="${recorded_ref}"
else
  build_image "${source_sha}" "${tag}"
  push_image "${tag}"
fi

mkdir -p "${STATE_DIR}"
{
  printf 'SOURCE_SHA=%s\n' "${source_sha}"
  printf 'REF_A=%s\n' "${IMAGE_REF}"
} >"${STATE_FILE}.part"
mv "${STATE_FILE}.part" "${STATE_FILE}"
log "image ${IMAGE_REF}"
printf '%s\n' "${IMAGE_REF}"
