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
#   5. hold staging (python -m gitops hold): a release of the rolled-back image must be
#      refused and change nothing; then lift the hold (gitops release)
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

# The work clone's main, made equal to the in-cluster repository's: the bump commits in a
# scratch worktree of its own and pushes, so the clone learns of it only by fetching.
sync_main() {
  git_through_port_forward fetch --quiet kind main
  git -C "${WORK_REPO}" checkout --quiet -B main kind/main
}

# bump REF: scripts/release/bump-staging.sh, as release.yml's bump runs it, pushing to the
# in-cluster repository.
bump() {
  (cd "${WORK_REPO}" && GITOPS_REMOTE=kind PYTHON="${PYTHON}" scripts/release/bump-staging.sh "$1")
}

push_main() {
  git_through_port_forward push --quiet kind main
}

sync_main

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
retry 4 with_git_remote bump "${ref_b}"
sync_main
bump_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"

wait_app iris-staging "${bump_sha}" iris-staging
wait_image iris-staging "${digest_b}" iris-staging
smoke iris-staging "${revision_b}"
deployed_image iris-production
[[ "${DEPLOYED_IMAGE}" == *"@${digest_a}" ]] ||
  die "production changed with a staging bump: it runs ${DEPLOYED_IMAGE}"
log "iris-production still runs ${digest_a}"

# --- rollback: git revert ----------------------------------------------------------------------

history="$(gitops history staging --json)"
revert_sha="$("${PYTHON}" -c 'import json, sys; print(json.load(sys.stdin)["changes"][0]["commit"])' <<<"${history}")"
[[ "${revert_sha}" == "${bump_sha}" ]] || die "gitops history names ${revert_sha} as the newest staging change, not the bump ${bump_sha}"
log "rolling back: git revert ${revert_sha:0:12}"
git -C "${WORK_REPO}" -c user.name="iris kind loop" -c user.email="kind-loop@localhost" \
  -c commit.gpgsign=false revert --no-edit "${revert_sha}" >/dev/null
push_main
reverted_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"

wait_app iris-staging "${reverted_sha}" iris-staging
wait_image iris-staging "${digest_a}" iris-staging
smoke iris-staging "${source_sha}"
# Production is pinned: neither the bump nor its revert reaches it.
deployed_image iris-production
[[ "${DEPLOYED_IMAGE}" == *"@${digest_a}" ]] ||
  die "production changed during the staging loop: it runs ${DEPLOYED_IMAGE}"

# --- hold: the next release must not bring the rolled-back code straight back ---------------------

log "holding staging (python -m gitops hold), then releasing the rolled-back image again"
gitops hold staging --reason "kind loop: ${revision_b:0:12} was rolled back"
commit_all "hold(staging): ${revision_b:0:12} was rolled back (kind)"
push_main
held_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"
bump_status=0
# shellcheck disable=SC2310 # its exit status is what is checked: 3 means "on hold"
with_git_remote bump "${ref_b}" || bump_status=$?
((bump_status == 3)) || die "a release into held staging exited ${bump_status}, not 3 (on hold)"
sync_main
main_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"
[[ "${main_sha}" == "${held_sha}" ]] || die "a release into held staging changed main"
# The hold file changes no rendered manifest: staging syncs it and keeps the old image.
wait_app iris-staging "${held_sha}" iris-staging
deployed_image iris-staging
[[ "${DEPLOYED_IMAGE}" == *"@${digest_a}" ]] || die "held staging runs ${DEPLOYED_IMAGE}, not ${digest_a}"
log "held staging refused the release and still runs ${digest_a:0:19}..."

gitops release staging
commit_all "release(staging): lift the hold (kind)"
push_main
released_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"
wait_app iris-staging "${released_sha}" iris-staging

log "loop complete: bump ${bump_sha:0:12} rolled staging to ${digest_b:0:19}..., revert ${reverted_sha:0:12} rolled it back to ${digest_a:0:19}..., a hold kept it there"
