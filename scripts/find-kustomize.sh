#!/usr/bin/env bash
# Prints the command that renders an overlay (`<command> <dir>`), for `make test` and
# `make manifests`, preferring the kustomize Argo CD v3.5.1 bundles:
#
#   scripts/find-kustomize.sh DIR
#
#   1. kustomize 5.8.1 on PATH               -> kustomize build
#   2. DIR/kustomize (installed here before) -> DIR/kustomize build
#   3. kubectl on PATH                       -> kubectl kustomize
#   4. none of them: installs kustomize 5.8.1 into DIR with scripts/install-kustomize.sh
#      (download checked against the pinned SHA-256), saying so on stderr, and prints
#      DIR/kustomize build. Where that download fails, one line says what to install.
#
# Only the command goes to stdout; everything else to stderr.
set -euo pipefail
shopt -s inherit_errexit

readonly WANTED="5.8.1"
dir="${1:?usage: $0 DIR}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if command -v kustomize >/dev/null && [[ "$(kustomize version 2>/dev/null || true)" == "v${WANTED}" ]]; then
  echo "kustomize build"
elif [[ -x "${dir}/kustomize" ]]; then
  echo "${dir}/kustomize build"
elif command -v kubectl >/dev/null; then
  echo "kubectl kustomize"
else
  echo "find-kustomize: neither kustomize ${WANTED} nor kubectl is on PATH; installing kustomize ${WANTED} into ${dir} (checksum-verified)" >&2
  log="$(mktemp)"
  trap 'rm -f "${log}"' EXIT
  if ! "${here}/install-kustomize.sh" "${dir}" >"${log}" 2>&1; then
    echo "find-kustomize: cannot install kustomize ${WANTED} ($(tail -n 1 "${log}")); install kubectl, or kustomize ${WANTED} from https://github.com/kubernetes-sigs/kustomize/releases, and run again" >&2
    exit 1
  fi
  echo "${dir}/kustomize build"
fi
