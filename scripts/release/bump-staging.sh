#!/usr/bin/env bash
# Point the staging overlay at a freshly pushed image, commit it as the release bot, and push.
#
# This is the one command the release workflow runs after pushing the image, and the same
# script the end-to-end tests run against real git repositories.
#
# Usage (from anywhere inside the clone to update):
#   scripts/release/bump-staging.sh <name>:<tag>@sha256:<digest>
#   scripts/release/bump-staging.sh <name>@sha256:<digest> <tag>
# e.g. europe-west1-docker.pkg.dev/my-project/iris/iris-api:sha-1a2b3c4@sha256:<64 hex>
#
# Environment (all optional):
#   GITOPS_REMOTE         remote to push to                      (default: origin)
#   GITOPS_BRANCH         branch Argo CD tracks                  (default: main)
#   GITOPS_PUSH_ATTEMPTS  fetch/re-apply/push attempts           (default: 5)
#   GITOPS_RETRY_DELAY    base seconds between attempts          (default: 2)
#   GITOPS_KUSTOMIZE      render command, e.g. "kustomize build" (default: see python -m gitops -h)
#   BUMP_GIT_NAME / BUMP_GIT_EMAIL  commit identity (default: github-actions[bot])
#   PYTHON                interpreter with the locked requirements (default: python3)
#   GITHUB_OUTPUT         if set (GitHub Actions), receives changed=true|false and commit=<sha>
#
# Exit status: 0 pushed (or staging already ran this image), 1 push still rejected after the
# last attempt, 2 bad input or a bump that failed (nothing was committed or pushed).
set -euo pipefail

readonly ENVIRONMENT=staging
readonly OVERLAY="deploy/overlays/${ENVIRONMENT}/kustomization.yaml"

die() {
  echo "bump-staging: error: $*" >&2
  exit 2
}

case $# in
  1) ref=$1 ;;
  2)
    [[ $1 == *@* ]] || die "with two arguments the first must be <name>@sha256:<digest>"
    ref="${1%%@*}:$2@${1#*@}"
    ;;
  *) die "usage: $0 <name>:<tag>@sha256:<digest>  |  $0 <name>@sha256:<digest> <tag>" ;;
esac

remote=${GITOPS_REMOTE:-origin}
branch=${GITOPS_BRANCH:-main}
attempts=${GITOPS_PUSH_ATTEMPTS:-5}
delay=${GITOPS_RETRY_DELAY:-2}
python=${PYTHON:-python3}
bot_name=${BUMP_GIT_NAME:-github-actions[bot]}
bot_email=${BUMP_GIT_EMAIL:-41898282+github-actions[bot]@users.noreply.github.com}
[[ $attempts =~ ^[1-9][0-9]*$ ]] || die "GITOPS_PUSH_ATTEMPTS must be a positive integer"
[[ $delay =~ ^[0-9]+$ ]] || die "GITOPS_RETRY_DELAY must be a whole number of seconds"

# The tool is imported from the checkout this script belongs to, whichever clone it edits.
tool_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
gitops() {
  PYTHONPATH="${tool_root}${PYTHONPATH:+:${PYTHONPATH}}" "$python" -m gitops "$@"
}

repo=$(git rev-parse --show-toplevel 2>/dev/null) || die "$PWD is not inside a git clone"
cd "$repo"

# Two bumps on one clone would fight over the checkout; the second waits for the first.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$(git rev-parse --git-common-dir)/gitops-bump.lock"
  flock -w 300 9 || die "another bump of this clone has held the lock for 5 minutes"
fi

# The bump commits only its own edit; anything else uncommitted would be lost or mixed in.
git update-index -q --refresh || true
git diff --quiet HEAD -- || die "the working tree has uncommitted changes; commit or stash them"

# Only used once the tool has accepted the reference, so the split below is safe.
name_tag=${ref%%@*}
image=${name_tag%:*}
subject="deploy(${ENVIRONMENT}): ${image##*/} ${name_tag##*:}"
body="Image: ${ref}"
if [[ -n ${GITHUB_RUN_ID:-} && -n ${GITHUB_REPOSITORY:-} ]]; then
  body+=$'\n'"Release run: ${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY}/actions/runs/${GITHUB_RUN_ID}"
fi

start=$(git symbolic-ref -q --short HEAD || git rev-parse HEAD)
finished=0
# shellcheck disable=SC2329 # called by the EXIT trap below
restore() {
  # On any failure, go back to where we started; the attempted commit is simply dropped.
  if [[ $finished -eq 0 ]]; then
    git checkout -q -f "$start" 2>/dev/null || true
  fi
}
trap restore EXIT

output() {
  if [[ -n ${GITHUB_OUTPUT:-} ]]; then
    printf '%s\n' "$@" >>"$GITHUB_OUTPUT"
  fi
}

backoff() {
  if ((attempt < attempts)); then
    local wait_s=$((delay * attempt + RANDOM % (delay + 1)))
    echo "bump-staging: $1; retrying in ${wait_s}s" >&2
    sleep "$wait_s"
  fi
}

for ((attempt = 1; attempt <= attempts; attempt++)); do
  # Always start from the newest tip: the bump is re-applied rather than rebased textually,
  # because a concurrent bump edits the very same lines and a textual rebase would conflict.
  if ! git fetch -q "$remote" "$branch"; then
    backoff "fetching ${remote}/${branch} failed"
    continue
  fi
  git checkout -q --detach FETCH_HEAD

  if ! gitops set-image "$ENVIRONMENT" "$ref"; then
    echo "bump-staging: the bump failed; nothing was committed or pushed" >&2
    exit 2
  fi
  if git diff --quiet -- "$OVERLAY"; then
    echo "bump-staging: ${ENVIRONMENT} already runs ${ref}; nothing to push"
    output "changed=false" "commit=$(git rev-parse HEAD)"
    exit 0
  fi

  git add -- "$OVERLAY"
  git -c user.name="$bot_name" -c user.email="$bot_email" -c commit.gpgsign=false \
    commit -q -m "$subject" -m "$body" -- "$OVERLAY"

  if git push -q "$remote" "HEAD:refs/heads/${branch}"; then
    commit=$(git rev-parse HEAD)
    finished=1
    echo "bump-staging: pushed ${commit} to ${remote}/${branch} (attempt ${attempt}): ${subject}"
    output "changed=true" "commit=${commit}"
    # Leave the local branch on the pushed commit when that loses nothing.
    if [[ $start == "$branch" ]] && git merge-base --is-ancestor "$branch" HEAD 2>/dev/null; then
      git checkout -q -B "$branch" HEAD
    else
      git checkout -q "$start"
    fi
    exit 0
  fi

  backoff "push rejected (${remote}/${branch} moved on)"
done

echo "bump-staging: error: could not push to ${remote}/${branch} in ${attempts} attempts" >&2
exit 1
