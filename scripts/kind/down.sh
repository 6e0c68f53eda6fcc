#!/usr/bin/env bash
# `make kind-down`: deletes what `make kind-up` made: the kind cluster, the local registry
# container, the work clone and the downloads. Safe to run when some of it is already gone.
# The diagnostics bundle (build/kind-diagnostics) stays.
set -Eeuo pipefail
shopt -s inherit_errexit 2>/dev/null || true
# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'on_error "$?" "$BASH_COMMAND"' ERR

require_tools docker kind

if kind get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER}"; then
  kind delete cluster --name "${KIND_CLUSTER}"
else
  log "no kind cluster ${KIND_CLUSTER}"
fi
if docker inspect "${REGISTRY_CONTAINER}" >/dev/null 2>&1; then
  docker rm --force "${REGISTRY_CONTAINER}" >/dev/null
  log "removed the registry container ${REGISTRY_CONTAINER}"
fi
rm -rf "${STATE_DIR}"
