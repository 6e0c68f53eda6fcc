#!/usr/bin/env bash
# `make kind-loop`: the release, promotion and rollback loop on the cluster `make kind-up`
# made. Each step is a function; main() runs them in this order (tests/scripts/
# test_kind_loop.py reads main() and the steps with bash's own parser and checks it):
#
#   1. release_reaches_staging_only: a second image, bumped into staging with
#      scripts/release/bump-staging.sh (what release.yml runs); staging rolls out, production
#      keeps the first image
#   2. config_change_reaches_staging_only: a change to deploy/base (IRIS_MAX_BATCH_ROWS=2)
#      pushed to main; the promotion gate refuses it at once (staging has not run it), then
#      staging rolls it out while production keeps its pod template and ReplicaSet
#   3. promotion_gate_refuses_during_soak_then_passes: `gitops promote staging production
#      --evidence argocd` (staging's Application read from the cluster) is refused inside the
#      soak time, passes once staging has run the commit healthy for KIND_SOAK_SECONDS, and
#      the promotion is pushed
#   4. production_runs_the_promotion: production syncs the pinned commit and runs the new
#      image and the base change together
#   5. smoke_tests_ran: both last syncs ran their PostSync smoke Job, which passed and was
#      deleted
#   6. staging_rolls_back_by_git_revert: the bump commit `gitops history staging` names is
#      reverted; staging returns to the first image, pinned production does not move
#   7. hold_refuses_a_release_until_lifted: `gitops hold staging` makes the release refuse
#      (exit 3, main unchanged); `gitops release staging` lifts it
#   8. promotion_revert_restores_production: `git revert` of the promotion brings production
#      back to the first image and the old config
set -Eeuo pipefail
# bash 4.4+: a failure inside $(...) stops the script too. macOS's bash 3.2 lacks it, so
# lib.sh never relies on it (its functions set variables instead of printing results).
shopt -s inherit_errexit 2>/dev/null || true
# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# How long staging must have run a commit healthy before the loop promotes it; short, so
# the loop proves the wait without spending the default ten minutes on it.
SOAK_SECONDS="${KIND_SOAK_SECONDS:-30}"

# The work clone's main, made equal to the in-cluster repository's: the bump commits in a
# scratch worktree of its own and pushes, so the clone learns of it only by fetching.
sync_main() {
  git_through_port_forward fetch --quiet kind main
  git -C "${WORK_REPO}" checkout --quiet -B main kind/main
}

# bump REF: scripts/release/bump-staging.sh, as release.yml's bump runs it, pushing to the
# in-cluster repository.
bump() {
  (cd "${WORK_REPO}" && PYTHON="${PYTHON}" scripts/release/bump-staging.sh "$1")
}

push_main() {
  git_through_port_forward push --quiet kind main
}

head_sha() { HEAD_SHA="$(git -C "${WORK_REPO}" rev-parse HEAD)"; }

# expect_image NAMESPACE DIGEST WHY: the Deployment in NAMESPACE names DIGEST, or the loop
# stops saying WHY it should.
expect_image() {
  deployed_image "$1"
  [[ "${DEPLOYED_IMAGE}" == *"@$2" ]] || die "$1 runs ${DEPLOYED_IMAGE:-nothing}, not $2: $3"
}

# workload_of NAMESPACE: sets TEMPLATE to the Deployment's pod template and HASHES to the
# pod-template-hash labels its pods carry (one per ReplicaSet, sorted, on one line). Replica counts are
# left out: the HorizontalPodAutoscaler changes them at will.
workload_of() {
  TEMPLATE="$(k --namespace "$1" get deployment iris-api -o jsonpath='{.spec.template}')"
  HASHES="$(k --namespace "$1" get pods -l app.kubernetes.io/name=iris-api \
    -o jsonpath='{range .items[*]}{.metadata.labels.pod-template-hash}{"\n"}{end}' | sort -u | tr '\n' ' ')"
}

# promote_refused PATTERN [ARGS...]: `gitops promote staging production --evidence argocd
# ARGS` must exit 2 with PATTERN (an extended regex) in its message and change no file.
promote_refused() {
  local pattern="$1" said status=0 changed
  shift
  # shellcheck disable=SC2310 # its exit status is what is checked: 2 means refused
  said="$(gitops promote staging production --evidence argocd "$@" 2>&1)" || status=$?
  ((status == 2)) || die "the promotion gate exited ${status}, not 2 (refused): ${said}"
  grep -Eq "${pattern}" <<<"${said}" || die "the promotion gate refused for another reason than /${pattern}/: ${said}"
  changed="$(git -C "${WORK_REPO}" status --porcelain)"
  [[ -z "${changed}" ]] || die "a refused promotion changed the work clone: ${changed}"
  log "promotion refused, as it must be: ${said#gitops: error: }"
}

# --- 1. a release reaches staging only ----------------------------------------------------------

release_reaches_staging_only() {
  # A different revision baked into the image gives a different digest, as a new commit would.
  head_sha
  REVISION_B="${HEAD_SHA}"
  log "building the image of ${REVISION_B:0:12}"
  build_image "${REVISION_B}" "sha-${REVISION_B:0:12}"
  push_image "sha-${REVISION_B:0:12}"
  REF_B="${IMAGE_REF}"
  DIGEST_B="${REF_B#*@}"
  [[ "${DIGEST_B}" != "${DIGEST_A}" ]] || die "the second image has the first one's digest; nothing would roll out"

  log "bumping staging to ${REF_B}"
  retry 4 with_git_remote bump "${REF_B}"
  sync_main
  head_sha
  BUMP_SHA="${HEAD_SHA}"
  wait_app iris-staging "${BUMP_SHA}" iris-staging
  wait_image iris-staging "${DIGEST_B}" iris-staging
  smoke iris-staging "${REVISION_B}"
  expect_image iris-production "${DIGEST_A}" "a staging release must not reach production"
  log "iris-production still runs ${DIGEST_A:0:19}..."
}

# --- 2. a base change reaches staging only -------------------------------------------------------

config_change_reaches_staging_only() {
  local deployment="${WORK_REPO}/deploy/base/deployment.yaml"
  if grep -q 'IRIS_MAX_BATCH_ROWS' "${deployment}"; then
    die "deploy/base already sets IRIS_MAX_BATCH_ROWS (an earlier kind-loop); 'make kind-up' starts a fresh work clone"
  fi
  wait_batch_answer iris-staging 200
  wait_batch_answer iris-production 200
  workload_of iris-production
  local template="${TEMPLATE}" hashes="${HASHES}"

  # The kind of change that reaches production with no image change: an env var in the base.
  "${PYTHON}" - "${deployment}" <<'EOF'
import sys
from pathlib import Path

path = Path(sys.argv[1])
text = path.read_text(encoding="utf-8")
anchor = "            - name: IRIS_METRICS_DIR\n"
if text.count(anchor) != 1:
    sys.exit(f"{path}: no single IRIS_METRICS_DIR entry to put the change before")
change = "            - name: IRIS_MAX_BATCH_ROWS\n              value: \"2\"\n"
path.write_text(text.replace(anchor, change + anchor), encoding="utf-8")
EOF
  commit_all "deploy(base): at most 2 rows per batch (kind loop)"
  push_main
  head_sha
  CONFIG_SHA="${HEAD_SHA}"

  # Right after the push, before Argo CD has synced it: staging has run nothing of it yet.
  promote_refused "staging has not deployed ${CONFIG_SHA:0:12} yet|argocd/iris-staging is pending on ${CONFIG_SHA:0:12}"

  wait_app iris-staging "${CONFIG_SHA}" iris-staging
  wait_image iris-staging "${DIGEST_B}" iris-staging
  wait_batch_answer iris-staging 413
  wait_batch_answer iris-production 200
  # Same pod template, and pods of the same ReplicaSet only: nothing was rolled out.
  workload_of iris-production
  [[ "${TEMPLATE}" == "${template}" ]] || die "production's pod template changed with a base change on main"
  [[ "${HASHES}" == "${hashes}" ]] || die "production's pods changed with a base change on main: ReplicaSets ${hashes}before, ${HASHES}now"
  expect_image iris-production "${DIGEST_A}" "a base change must not reach production"
  log "iris-production kept its pods: the base change runs in staging only"
}

# --- 3. the promotion gate ---------------------------------------------------------------------

promotion_gate_refuses_during_soak_then_passes() {
  # The evidence counts only once the sync, PostSync smoke test included, has succeeded.
  wait_smoke_test iris-staging iris-staging "${CONFIG_SHA}"
  promote_refused "staging has run ${CONFIG_SHA:0:12} healthy for .* only; the soak time is 10m 0s"

  local deadline=$((SECONDS + SOAK_SECONDS + 120)) said status changed
  log "waiting for staging to have run ${CONFIG_SHA:0:12} healthy for ${SOAK_SECONDS}s"
  while :; do
    status=0
    # shellcheck disable=SC2310 # its exit status is what is checked
    said="$(gitops promote staging production --evidence argocd --soak "${SOAK_SECONDS}s" 2>&1)" || status=$?
    ((status != 0)) || break
    grep -q 'the soak time is' <<<"${said}" || die "the promotion gate refused for another reason than the soak: ${said}"
    ((SECONDS < deadline)) || die "still inside the soak after $((SOAK_SECONDS + 120))s: ${said}"
    sleep 5
  done
  log "promotion gate passed: ${said%%$'\n'*}"
  changed="$(git -C "${WORK_REPO}" status --porcelain)"
  [[ "${changed}" == " M argocd/apps/production.yaml" ]] ||
    die "the promotion changed other files than argocd/apps/production.yaml: ${changed}"
  commit_all "deploy(production): promote ${CONFIG_SHA:0:12} (kind)"
  push_main
  head_sha
  PROMOTION_SHA="${HEAD_SHA}"
}

# --- 4. production runs what staging verified ----------------------------------------------------

production_runs_the_promotion() {
  # The root Application applies the new pin; production then syncs the pinned commit.
  wait_app iris-root "${PROMOTION_SHA}"
  wait_app iris-production "${CONFIG_SHA}" iris-production
  wait_image iris-production "${DIGEST_B}" iris-production
  wait_batch_answer iris-production 413
  smoke iris-production "${REVISION_B}"
  log "iris-production runs ${DIGEST_B:0:19}... with the base change, as staging did"
}

# --- 5. the PostSync smoke tests ---------------------------------------------------------------

# Staging's ran before the gate looked at it (step 3); production's ran after the promotion.
smoke_tests_ran() {
  wait_smoke_test iris-production iris-production "${CONFIG_SHA}"
}

# --- 6. staging rolls back: git revert ------------------------------------------------------------

staging_rolls_back_by_git_revert() {
  local history revert_sha
  history="$(gitops history staging --json)"
  revert_sha="$(json_path changes 0 commit <<<"${history}")"
  [[ "${revert_sha}" == "${BUMP_SHA}" ]] || die "gitops history names ${revert_sha} as the newest staging change, not the bump ${BUMP_SHA}"
  log "rolling back staging: git revert ${revert_sha:0:12}"
  git -C "${WORK_REPO}" -c user.name="iris kind loop" -c user.email="kind-loop@localhost" \
    -c commit.gpgsign=false revert --no-edit "${revert_sha}" >/dev/null
  push_main
  head_sha
  REVERTED_SHA="${HEAD_SHA}"
  wait_app iris-staging "${REVERTED_SHA}" iris-staging
  wait_image iris-staging "${DIGEST_A}" iris-staging
  smoke iris-staging "${SOURCE_SHA}"
  # Production is pinned: a revert on main does not reach it.
  expect_image iris-production "${DIGEST_B}" "production is pinned to ${CONFIG_SHA:0:12}"
}

# --- 7. hold: the next release must not bring the rolled-back code straight back ------------------

hold_refuses_a_release_until_lifted() {
  log "holding staging (python -m gitops hold), then releasing the rolled-back image again"
  gitops hold staging --reason "kind loop: ${REVISION_B:0:12} was rolled back"
  commit_all "hold(staging): ${REVISION_B:0:12} was rolled back (kind)"
  push_main
  head_sha
  local held_sha="${HEAD_SHA}" bump_status=0
  # shellcheck disable=SC2310 # its exit status is what is checked: 3 means "on hold"
  with_git_remote bump "${REF_B}" || bump_status=$?
  ((bump_status == 3)) || die "a release into held staging exited ${bump_status}, not 3 (on hold)"
  sync_main
  head_sha
  [[ "${HEAD_SHA}" == "${held_sha}" ]] || die "a release into held staging changed main"
  # The hold file changes no rendered manifest: staging syncs it and keeps the old image.
  wait_app iris-staging "${held_sha}" iris-staging
  expect_image iris-staging "${DIGEST_A}" "held staging must keep the image it runs"
  log "held staging refused the release and still runs ${DIGEST_A:0:19}..."

  gitops release staging
  commit_all "release(staging): lift the hold (kind)"
  push_main
  head_sha
  wait_app iris-staging "${HEAD_SHA}" iris-staging
}

# --- 8. the promotion is reverted ----------------------------------------------------------------

promotion_revert_restores_production() {
  local history revert_sha pinned_before
  history="$(gitops history production --json)"
  revert_sha="$(json_path changes 0 commit <<<"${history}")"
  pinned_before="$(json_path changes 0 pinned_before <<<"${history}")"
  [[ "${revert_sha}" == "${PROMOTION_SHA}" ]] || die "gitops history names ${revert_sha} as the newest production change, not the promotion ${PROMOTION_SHA}"
  log "rolling back production: git revert ${revert_sha:0:12} (back to ${pinned_before:0:12})"
  git -C "${WORK_REPO}" -c user.name="iris kind loop" -c user.email="kind-loop@localhost" \
    -c commit.gpgsign=false revert --no-edit "${revert_sha}" >/dev/null
  push_main
  head_sha
  wait_app iris-root "${HEAD_SHA}"
  wait_app iris-production "${pinned_before}" iris-production
  wait_image iris-production "${DIGEST_A}" iris-production
  wait_batch_answer iris-production 200
  smoke iris-production "${SOURCE_SHA}"
  log "the revert of the promotion restored production's image and config"
}

# json_path KEY...: the value at that path of the JSON on stdin (list indexes as numbers).
json_path() {
  "${PYTHON}" -c '
import json, sys
node = json.load(sys.stdin)
for key in sys.argv[1:]:
    node = node[int(key)] if isinstance(node, list) else node[key]
print(node)' "$@"
}

main() {
  require_tools docker kind kubectl git curl
  [[ -f "${STATE_FILE}" && -d "${WORK_REPO}/.git" ]] || die "no kind deployment found; run 'make kind-up' first"
  SOURCE_SHA="$(sed -n 's/^SOURCE_SHA=//p' "${STATE_FILE}")"
  local ref_a
  ref_a="$(sed -n 's/^REF_A=//p' "${STATE_FILE}")"
  [[ -n "${SOURCE_SHA}" && "${ref_a}" == *@sha256:* ]] || die "${STATE_FILE} names no image; run 'make kind-up' again"
  DIGEST_A="${ref_a#*@}"
  # The GitOps tool's remote is the in-cluster repository; its promotion gate reads
  # staging's Application from this cluster (nothing here reaches GitHub).
  export GITOPS_REMOTE=kind GITOPS_KUBECTL="kubectl --context=${KUBE_CONTEXT}"

  sync_main
  release_reaches_staging_only
  config_change_reaches_staging_only
  promotion_gate_refuses_during_soak_then_passes
  production_runs_the_promotion
  smoke_tests_ran
  staging_rolls_back_by_git_revert
  hold_refuses_a_release_until_lifted
  promotion_revert_restores_production

  log "loop complete: staging took ${DIGEST_B:0:19}... and a base change, production took both only by promotion (gate: no evidence, soak, pass), PostSync smoke tests passed, git revert rolled back staging, a hold kept it there, and reverting the promotion restored production"
}

# Run when executed; tests/scripts/test_kind_loop.py sources the file to read the steps.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  trap 'on_error "$?" "$BASH_COMMAND"' ERR
  trap finish EXIT
  main "$@"
fi
