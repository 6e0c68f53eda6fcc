#!/usr/bin/env bash
# `make kind-loop`: the release and rollback loop on the cluster `make kind-up` made.
#
#   1. build a second image and bump staging to it with scripts/release/bump-staging.sh,
#      the very script release.yml runs, pushing to the in-cluster repository
#   2. wait for Argo CD to sync it and for the rollout; staging serves the new revision and
#      production still runs the old image
#   3. roll back the way docs/delivery.md says: `git revert` of the bump commit that
#      `python -m gitops history staging` names, pushed to main
#   4. wait for the old image to be back and serving
set -Eeuo pipefail
# bash 4.4+: a failure inside $(...) stops the script too. macOS's bash 3.2 lacks it, so
# lib.sh never relies on it (its functions set variables instead of printing results).
shopt -s inherit_errexit 2>/dev/null || true
# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'on_error "$?" "$BASH_COMMAND"' ERR
trap finish EXIT

require_tools docker kind kubectl git curl
[[ -f "${STATE_FILE}" && -d "${WORK_REPO}/.git" ]] || die "no kind deployment found; run 'make kind-up' first"
source_sha="$(sed -n 's/^SOURCE_SHA=//p' "${STATE_FILE}")"
ref_a="$(sed -n 's/^REF_A=//p' "${STATE_FILE}")"
[[ -n "${source_sha}" && "${ref_a}" == *@sha256:* ]] || die "${STATE_FILE} names no image; run 'make kind-up' again"
digest_a="${ref_a#*@}"

git_through_port_forward fetch --quiet kind main
git -C "${WORK_REPO}" checkout --quiet -B main kind/main

# --- release: a new image, bumped in git -------------------------------------------------------

# A different revision baked into the image gives a different digest, as a new commit would.
revision_b="$(git -C "${WORK_REPO}" rev-parse HEAD)"
log "building the image of ${revision_b:0:12}"
build_image "${revision_b}" "sha-${revision_b:0:12}"
push_image "sha-${revision_b:0:12}"
ref_b="${IMAGE_REF}"
digest_b="${ref_b#*@}"
[[ "${digest_b}" != "${digest_a}" ]] || die "the second image has the first one's digest; nothing would roll out"

log "bumping staging to ${ref_b}"
bump() {
  (cd "${WORK_REPO}" && GITOPS_REMOTE=kind PYTHON="${PYTHON}" scripts/release/bump-staging.sh "${ref_b}")
}
retry 4 with_git_remote bump
bump_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"

wait_app iris-staging "${bump_sha}" iris-staging
wait_image iris-staging "${digest_b}" iris-staging
smoke iris-staging "${revision_b}"
deployed_image iris-production
[[ "${DEPLOYED_IMAGE}" == *"@${digest_a}" ]] ||
  die "production changed with a staging bump: it runs ${DEPLOYED_IMAGE}"
log "iris-production still runs ${digest_a}"

# --- rollback: git revert ----------------------------------------------------------------------

revert_sha="$(gitops history staging --json | "${PYTHON}" -c 'import json, sys; print(json.load(sys.stdin)["changes"][0]["commit"])')"
[[ "${revert_sha}" == "${bump_sha}" ]] || die "gitops history names ${revert_sha} as the newest staging change, not the bump ${bump_sha}"
log "rolling back: git revert ${revert_sha:0:12}"
git -C "${WORK_REPO}" -c user.name="iris kind loop" -c user.email="kind-loop@localhost" \
  -c commit.gpgsign=false revert --no-edit "${revert_sha}" >/dev/null
git_through_port_forward push --quiet kind main
reverted_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"

wait_app iris-staging "${reverted_sha}" iris-staging
wait_image iris-staging "${digest_a}" iris-staging
smoke iris-staging "${source_sha}"
wait_app iris-production "${reverted_sha}" iris-production

log "loop complete: bump ${bump_sha:0:12} rolled staging to ${digest_b:0:19}..., revert ${reverted_sha:0:12} rolled it back to ${digest_a:0:19}..."
