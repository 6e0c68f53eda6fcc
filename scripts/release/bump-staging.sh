#!/usr/bin/env bash
# Point staging at a freshly pushed image: `python -m gitops bump staging <ref>`, which fetches
# the newest main, refuses a held staging or an image older than the one running, writes the
# image and its release record into deploy/release, commits only them and pushes
# (re-applying on the new tip when main moved on). Production takes it only by promotion.
#
# release.yml runs the tool directly; this wrapper keeps the short form for the kind loop and
# for people, and accepts the reference in two pieces as some registries print it.
#
# Usage (from anywhere inside the clone to update):
#   scripts/release/bump-staging.sh <name>:<tag>@sha256:<digest>
#   scripts/release/bump-staging.sh <name>@sha256:<digest> <tag>
#
# Environment: PYTHON (interpreter with requirements/gitops.lock installed, default python3),
# and the tool's own GITOPS_REMOTE, GITOPS_BRANCH, GITOPS_PUSH_ATTEMPTS, GITOPS_RETRY_DELAY,
# GITOPS_AUTHOR, GITOPS_KUSTOMIZE, GITOPS_TOKEN (docs/gitops.md); GITOPS_MODEL_METADATA, the
# image's model metadata.json for the release record (default: none).
# Exit status: that of `python -m gitops bump` (0 done, 1 push rejected, 2 error, 3 on hold).
set -euo pipefail

case $# in
  1) ref=$1 ;;
  2)
    if [[ $1 != *@* ]]; then
      echo "bump-staging: error: with two arguments the first must be <name>@sha256:<digest>" >&2
      exit 2
    fi
    ref="${1%%@*}:$2@${1#*@}"
    ;;
  *)
    echo "usage: $0 <name>:<tag>@sha256:<digest>  |  $0 <name>@sha256:<digest> <tag>" >&2
    exit 2
    ;;
esac

# The tool is imported from the checkout this script belongs to, whichever clone it edits.
tool_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export PYTHONPATH="${tool_root}${PYTHONPATH:+:${PYTHONPATH}}"
record=()
if [[ -n ${GITOPS_MODEL_METADATA:-} ]]; then
  record=(--metadata "$GITOPS_MODEL_METADATA")
fi
exec "${PYTHON:-python3}" -m gitops bump staging "$ref" "${record[@]}"
