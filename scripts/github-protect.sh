#!/usr/bin/env bash
# Protect main on GitHub as the repository describes it, through the REST API (`gh api`):
#
#   1. the ruleset .github/rulesets/main.json on the default branch: pull requests only,
#      the CI checks required, code-owner review for the paths in .github/CODEOWNERS, no
#      force push, no deletion; the one bypass actor is your GitHub App (--app-id);
#   2. the environment `gitops`, usable by main only, which holds the App's private key, so
#      that no workflow on another branch can mint the token that bypasses the ruleset.
#
# Usage:
#   scripts/github-protect.sh --repo <owner>/<repo> --app-id <id> --dry-run   # print the plan
#   scripts/github-protect.sh --repo <owner>/<repo> --app-id <id>
#
# Idempotent: the ruleset is found by name and replaced (PUT) if it exists, created (POST)
# otherwise; the environment and its branch policy likewise. Needs gh (logged in as a
# repository admin) and jq. docs/delivery.md explains the App and its permissions.
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly RULESET_FILE="${ROOT}/.github/rulesets/main.json"
readonly CODEOWNERS_FILE="${ROOT}/.github/CODEOWNERS"
readonly ENVIRONMENT="gitops"
readonly BRANCH="main"
readonly PLACEHOLDER_OWNER="@your-org"

REPOSITORY="${GITHUB_REPOSITORY:-}"
APP_ID="${GITOPS_APP_ID:-}"
DRY_RUN=0

die() { echo "${0##*/}: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

usage() {
  cat <<'EOF'
Usage: scripts/github-protect.sh --repo OWNER/REPO --app-id ID [--dry-run]

  --repo OWNER/REPO   the repository to protect            [GITHUB_REPOSITORY]
  --app-id ID         the numeric ID of your GitHub App     [GITOPS_APP_ID]
                      (App settings > General > App ID; not the client ID)
  --dry-run           print the gh commands as a shell script; call nothing
  -h, --help          this text
EOF
}

while (($#)); do
  case "$1" in
    --repo) REPOSITORY="${2:?--repo needs a value}"; shift 2 ;;
    --app-id) APP_ID="${2:?--app-id needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

# Everything is checked before the first call, so a refused run changes nothing.
[[ -n "$REPOSITORY" ]] || die "set --repo (or GITHUB_REPOSITORY) to <owner>/<repo>"
[[ "$REPOSITORY" =~ ^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$ ]] || die "'$REPOSITORY' is not <owner>/<repo>"
[[ -n "$APP_ID" ]] || die "set --app-id (or GITOPS_APP_ID) to your GitHub App's numeric ID"
[[ "$APP_ID" =~ ^[1-9][0-9]*$ ]] || die "App ID '$APP_ID' is not a number (the App ID, not the client ID)"
command -v jq >/dev/null || die "jq is not installed"
((DRY_RUN)) || command -v gh >/dev/null || die "gh (the GitHub CLI) is not installed"
jq -e '.bypass_actors | length == 1' "$RULESET_FILE" >/dev/null ||
  die "${RULESET_FILE#"$ROOT"/} must name exactly one bypass actor"
# A ruleset requiring review from owners that do not exist would block every such change.
placeholder_owner=0
if grep -v '^[[:space:]]*#' "$CODEOWNERS_FILE" | grep -Eq "[[:space:]]${PLACEHOLDER_OWNER}([[:space:]]|$)"; then
  placeholder_owner=1
  ((DRY_RUN)) || die ".github/CODEOWNERS still names ${PLACEHOLDER_OWNER}; replace it with your user or team, commit, push, then run this again"
fi

# Prints words so the line can be pasted into a shell.
quote() {
  local out=() word
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then
      out+=("$word")
    elif [[ "$word" != *"'"* ]]; then
      out+=("'${word}'")
    else
      out+=("$(printf '%q' "$word")")
    fi
  done
  echo "${out[*]}"
}

# gh api with a JSON body on stdin; in a dry run, the same call as a here-document.
api_with_body() {
  local body=$1
  shift
  if ((DRY_RUN)); then
    printf '%s <<'"'"'JSON'"'"'\n%s\nJSON\n' "$(quote gh api "$@" --input -)" "$body"
  else
    gh api "$@" --input - <<<"$body" >/dev/null
  fi
}

readonly API="repos/${REPOSITORY}"
ruleset_body="$(jq --argjson id "$APP_ID" '.bypass_actors |= map(.actor_id = $id)' "$RULESET_FILE")"
ruleset_name="$(jq -r .name "$RULESET_FILE")"
environment_body='{"deployment_branch_policy":{"protected_branches":false,"custom_branch_policies":true}}'
branch_policy_body="{\"name\":\"${BRANCH}\",\"type\":\"branch\"}"
readonly FIND_RULESET=".[] | select(.name == \"${ruleset_name}\") | .id"
readonly FIND_POLICY=".branch_policies[] | select(.name == \"${BRANCH}\" and .type == \"branch\") | .id"

# The plan is shell text whose $id and $policy expand when the plan runs, not now.
# shellcheck disable=SC2016
if ((DRY_RUN)); then
  echo "#!/usr/bin/env bash"
  echo "# Plan for ${REPOSITORY} (dry run: nothing was called)."
  echo "set -euo pipefail"
  if ((placeholder_owner)); then
    echo "# WARNING: .github/CODEOWNERS still names ${PLACEHOLDER_OWNER}; a real run refuses until it names you."
  fi
  echo "# 1. The ruleset '${ruleset_name}', replaced if it exists, created otherwise."
  echo "id=\"\$($(quote gh api "${API}/rulesets" --paginate --jq "$FIND_RULESET"))\""
  echo 'if [[ -n "$id" ]]; then'
  # The id is only known when the plan runs, so this one line is written by hand.
  printf 'gh api --method PUT "%s/rulesets/$id" --input - <<'"'"'JSON'"'"'\n%s\nJSON\n' "$API" "$ruleset_body"
  echo "else"
  api_with_body "$ruleset_body" --method POST "${API}/rulesets"
  echo "fi"
  echo "# 2. The environment '${ENVIRONMENT}', deployable from ${BRANCH} only."
  api_with_body "$environment_body" --method PUT "${API}/environments/${ENVIRONMENT}"
  echo "policy=\"\$($(quote gh api "${API}/environments/${ENVIRONMENT}/deployment-branch-policies" --jq "$FIND_POLICY"))\""
  echo 'if [[ -z "$policy" ]]; then'
  api_with_body "$branch_policy_body" --method POST "${API}/environments/${ENVIRONMENT}/deployment-branch-policies"
  echo "fi"
  exit 0
fi

log "ruleset '${ruleset_name}' on ${REPOSITORY} (bypass: App ${APP_ID})"
id="$(gh api "${API}/rulesets" --paginate --jq "$FIND_RULESET")"
if [[ -n "$id" ]]; then
  [[ "$id" =~ ^[0-9]+$ ]] || die "more than one ruleset is named '${ruleset_name}' (ids: ${id//$'\n'/, }); delete the extra ones"
  api_with_body "$ruleset_body" --method PUT "${API}/rulesets/${id}"
  log "replaced ruleset ${id}"
else
  api_with_body "$ruleset_body" --method POST "${API}/rulesets"
  log "created the ruleset"
fi

log "environment '${ENVIRONMENT}' (deployable from ${BRANCH} only)"
api_with_body "$environment_body" --method PUT "${API}/environments/${ENVIRONMENT}"
policy="$(gh api "${API}/environments/${ENVIRONMENT}/deployment-branch-policies" --jq "$FIND_POLICY")"
if [[ -z "$policy" ]]; then
  api_with_body "$branch_policy_body" --method POST "${API}/environments/${ENVIRONMENT}/deployment-branch-policies"
fi

cat >&2 <<EOF
==> done. Give the workflows the App (once; docs/delivery.md):
    gh variable set GITOPS_APP_CLIENT_ID --repo ${REPOSITORY} --body <the App's client ID>
    gh secret set GITOPS_APP_PRIVATE_KEY --repo ${REPOSITORY} --env ${ENVIRONMENT} < <the App's private key .pem>
EOF
