#!/usr/bin/env bash
# From an empty Google Cloud project to Argo CD syncing this repository on GKE.
#
#   scripts/gke-bootstrap.sh --project my-project --github-owner my-org --github-repo iris-gitops
#   scripts/gke-bootstrap.sh ... --dry-run     # print the plan, call nothing
#
# Safe to re-run, and a re-run converges: every resource is described before it is
# created, and where a setting can drift (the provider's condition and mapping, the
# registry's immutable tags, who may act as the release account) the live value is
# compared with the wanted one and updated when they differ. No service-account key is ever
# created: GitHub Actions authenticates through Workload Identity Federation, limited to the
# release workflow of this one repository (by GitHub's numeric ids) on its main branch.
# Before anything is created, it checks that GitHub's copy of main points Argo CD at this
# repository and that Argo CD's install manifest has its recorded sha256.
# docs/delivery.md walks through it; scripts/gke-teardown.sh removes what this creates.
set -euo pipefail
shopt -s inherit_errexit

readonly ARGOCD_VERSION="v3.5.1"
readonly GITHUB_OIDC_ISSUER="https://token.actions.githubusercontent.com"

# Paths in the plan (argocd/...) are relative to the repository root.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/gke-common.sh
source scripts/gke-common.sh

OWN_OPTIONS_HELP="Bootstrap only:
  --standard                 create a GKE Standard cluster (Dataplane V2) instead of Autopilot
  --github-repository-id ID  GitHub's numeric id of the repository   [GITHUB_REPO_ID]
  --github-owner-id ID       GitHub's numeric id of its owner         [GITHUB_OWNER_ID]
                             (both read with 'gh api repos/OWNER/REPO' when not given)
  --argocd-manifest FILE     Argo CD's install.yaml, already downloaded [ARGOCD_INSTALL_MANIFEST]
                             (checked against argocd/install/remote-resources.sha256)
  --github-app-id ID         the GitHub App's numeric App ID            [GITOPS_APP_ID]
  --github-app-installation-id ID  its installation on the repository [GITOPS_APP_INSTALLATION_ID]
  --github-app-key FILE      its private key (.pem), never printed      [GITOPS_APP_PRIVATE_KEY_FILE]
                             (all three or none: with them Argo CD Notifications sets the
                             argocd/iris-<env> commit statuses the promotion gate reads)
  RELEASE_WORKFLOW [release.yml]  the workflow whose jobs may push images
  IP_WAIT_SECONDS [600] how long to wait for the production Service's external IP
  BIND_RETRY_SECONDS [15] pause between tries of an IAM binding a new account is not ready for"

STANDARD=0
GH_REPOSITORY_ID="${GITHUB_REPO_ID:-}"
GH_OWNER_ID="${GITHUB_OWNER_ID:-}"
ARGOCD_MANIFEST="${ARGOCD_INSTALL_MANIFEST:-}"
APP_ID="${GITOPS_APP_ID:-}"
APP_INSTALLATION_ID="${GITOPS_APP_INSTALLATION_ID:-}"
APP_KEY_FILE="${GITOPS_APP_PRIVATE_KEY_FILE:-}"
own_option() {
  case "$1" in
    --standard) STANDARD=1 ;;
    --github-repository-id) GH_REPOSITORY_ID="$2"; OWN_SHIFT=2 ;;
    --github-owner-id) GH_OWNER_ID="$2"; OWN_SHIFT=2 ;;
    --argocd-manifest) ARGOCD_MANIFEST="$2"; OWN_SHIFT=2 ;;
    --github-app-id) APP_ID="$2"; OWN_SHIFT=2 ;;
    --github-app-installation-id) APP_INSTALLATION_ID="$2"; OWN_SHIFT=2 ;;
    --github-app-key) APP_KEY_FILE="$2"; OWN_SHIFT=2 ;;
    *) return 1 ;;
  esac
}
IP_WAIT_SECONDS="${IP_WAIT_SECONDS:-600}"
BIND_RETRY_SECONDS="${BIND_RETRY_SECONDS:-15}"
# The one workflow allowed to push images. Its job_workflow_ref, which the provider pins,
# is derived from this name alone.
readonly RELEASE_WORKFLOW="${RELEASE_WORKFLOW:-release.yml}"
parse_options "$@"
[[ "$IP_WAIT_SECONDS" =~ ^[0-9]+$ ]] || die "IP_WAIT_SECONDS must be a whole number of seconds"
[[ "$BIND_RETRY_SECONDS" =~ ^[0-9]+$ ]] || die "BIND_RETRY_SECONDS must be a whole number of seconds"
for id in "$GH_REPOSITORY_ID" "$GH_OWNER_ID"; do
  [[ -z "$id" || "$id" =~ ^[1-9][0-9]{0,19}$ ]] || die "GitHub ids are numbers; '$id' is not one"
done
[[ -z "$GH_REPOSITORY_ID" && -z "$GH_OWNER_ID" ]] || [[ -n "$GH_REPOSITORY_ID" && -n "$GH_OWNER_ID" ]] ||
  die "give both --github-repository-id and --github-owner-id, or neither (then gh reads them)"
check_app_credentials "$APP_ID" "$APP_INSTALLATION_ID" "$APP_KEY_FILE"
[[ "$RELEASE_WORKFLOW" =~ ^[A-Za-z0-9._-]+\.ya?ml$ ]] || die "RELEASE_WORKFLOW '$RELEASE_WORKFLOW' is not a workflow file name"
[[ -f ".github/workflows/${RELEASE_WORKFLOW}" ]] || die "no .github/workflows/${RELEASE_WORKFLOW}; set RELEASE_WORKFLOW to the workflow that pushes images"
readonly REPO_URL="https://github.com/${GH_REPOSITORY}.git"
# The Secret Argo CD Notifications reads its service credentials from (its default name).
readonly NOTIFICATIONS_SECRET="argocd-notifications-secret"

# Describe before create: `ensure LABEL DESCRIBE... -- CREATE...` runs CREATE only when
# DESCRIBE fails. The dry-run plan prints the same logic as one shell line.
ensure() {
  local label="$1"
  shift
  split_at_dashdash "$@"
  if ((DRY_RUN)); then
    echo "$(quote "${FIRST[@]}") >/dev/null 2>&1 || $(quote "${SECOND[@]}")"
  elif "${FIRST[@]}" >/dev/null 2>&1; then
    log "exists: ${label}"
  else
    log "creating: ${label}"
    "${SECOND[@]}"
  fi
}

# Describe before binding: `ensure_binding LABEL POLICY... -- ADD...` runs ADD only when
# POLICY (a filtered get-iam-policy) prints nothing. Adding an existing binding again would
# be harmless, but it rewrites the policy on every run.
ensure_binding() {
  local label="$1"
  shift
  split_at_dashdash "$@"
  if ((DRY_RUN)); then
    echo "test -n \"\$($(quote "${FIRST[@]}"))\" || $(quote "${SECOND[@]}")"
  elif [[ -n "$("${FIRST[@]}" 2>/dev/null || true)" ]]; then
    log "exists: ${label}"
  else
    log "binding: ${label}"
    # IAM is eventually consistent: a service account created seconds ago can be refused
    # as "does not exist" for up to a minute or so. Retry instead of failing the bootstrap.
    local attempt
    for attempt in 1 2 3 4 5 6 7 8; do
      "${SECOND[@]}" && return 0
      ((attempt < 8)) || die "could not add the binding (${label}); re-run the script to retry"
      log "retrying in ${BIND_RETRY_SECONDS}s (attempt ${attempt} of 8 failed)"
      sleep "$BIND_RETRY_SECONDS"
    done
  fi
}

# Workload Identity pools and providers are soft-deleted for 30 days and keep their id;
# one deleted by gke-teardown.sh comes back with `undelete` instead of a failing create.
# `undelete_if_deleted LABEL DESCRIBE... -- UNDELETE...`
undelete_if_deleted() {
  local label="$1"
  shift
  split_at_dashdash "$@"
  if ((DRY_RUN)); then
    echo "# if ${label} is soft-deleted: $(quote "${SECOND[@]}")"
  elif [[ "$("${FIRST[@]}" --format='value(state)' 2>/dev/null || true)" == "DELETED" ]]; then
    log "undeleting: ${label}"
    "${SECOND[@]}"
  fi
}

# `converge LABEL WANT FORMAT DESCRIBE... -- UPDATE...` runs UPDATE when DESCRIBE with
# --format=FORMAT prints something other than WANT: an existing resource is brought to the
# wanted state, not just found. A map prints as key=value pairs joined by ';' (gcloud's
# value() format); those are sorted and joined by ',' so their order does not matter.
normalize() { tr ';' '\n' | LC_ALL=C sort | paste -sd, -; }
converge() {
  local label="$1" want format="$3"
  want="$(printf '%s' "$2" | normalize)"
  shift 3
  split_at_dashdash "$@"
  if ((DRY_RUN)); then
    printf '%s\n' "test \"\$($(quote "${FIRST[@]}" "--format=${format}") | tr ';' '\\n' | LC_ALL=C sort | paste -sd, -)\" = $(quote "$want") || $(quote "${SECOND[@]}")"
    return 0
  fi
  local live
  live="$("${FIRST[@]}" --format="$format" | normalize)"
  if [[ "$live" == "$want" ]]; then
    log "up to date: ${label}"
  else
    log "updating: ${label} (was: ${live:-unset})"
    "${SECOND[@]}"
  fi
}

# The repoURLs and sourceRepos that the manifests under DIR/argocd point Argo CD at, as
# "file<TAB>url" lines. argocd/install/ is Argo CD itself and names no repository.
argocd_urls() {
  local dir="$1" manifest
  shopt -s nullglob
  local manifests=("$dir"/argocd/*.yaml "$dir"/argocd/*/*.yaml)
  shopt -u nullglob
  ((${#manifests[@]})) || die "no argocd/*.yaml found in ${dir}"
  for manifest in "${manifests[@]}"; do
    awk -v file="${manifest#"$dir"/}" '
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*-?[[:space:]]*repoURL:/ { sub(/^[^:]*:[[:space:]]*/, ""); print file "\t" $0; next }
      /^[[:space:]]*sourceRepos:/ { in_list = 1; next }
      in_list && /^[[:space:]]*-[[:space:]]/ { sub(/^[[:space:]]*-[[:space:]]*/, ""); print file "\t" $0; next }
      { in_list = 0 }
    ' "$manifest" | tr -d "\"'"
  done
}

# GitHub URLs ignore case and the .git suffix; compare them the same way.
normalize_url() {
  local url
  url="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
  printf '%s' "${url%.git}"
}

# The first manifest under DIR/argocd that points Argo CD elsewhere than REPO_URL, as
# "file points Argo CD at url", or nothing.
url_mismatch() {
  local file url
  while IFS=$'\t' read -r file url; do
    if [[ "$(normalize_url "$url")" != "$(normalize_url "$REPO_URL")" ]]; then
      echo "${file} points Argo CD at ${url}, not ${REPO_URL}"
      return 0
    fi
  done < <(argocd_urls "$1")
}

# --- preflight: nothing is created until all of this holds ------------------------------------

readonly SET_REPO_FIX="scripts/gitops.sh set-repo ${REPO_URL} && git commit -am 'Point Argo CD at ${GH_REPOSITORY}' && git push origin main"
if ((DRY_RUN)); then
  mismatch="$(url_mismatch .)"
  [[ -z "$mismatch" ]] || echo "# WARNING: ${mismatch}; first run: ${SET_REPO_FIX}"
  echo "# gke-bootstrap plan for project ${PROJECT_ID}, region ${REGION}, repository ${GH_REPOSITORY}"
  echo "# (dry run: nothing was called; <placeholders> are read when run)"
  echo "# checked first: main of ${REPO_URL} as GitHub serves it points Argo CD there too"
  if [[ -z "$GH_REPOSITORY_ID" ]]; then
    echo "# GitHub ids: gh api repos/${GH_REPOSITORY} --jq '.id, .owner.id' (or pass --github-repository-id, --github-owner-id)"
    GH_REPOSITORY_ID="<repository-id>"
    GH_OWNER_ID="<owner-id>"
  fi
  ARGOCD_RENDERED="argocd-install.yaml"
  echo "# Argo CD ${ARGOCD_VERSION}: download, check the sha256 in argocd/install/remote-resources.sha256, render"
  run scripts/argocd-install.sh --output "$ARGOCD_RENDERED" ${ARGOCD_MANIFEST:+--from "$ARGOCD_MANIFEST"}
else
  for tool in gcloud kubectl git; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH (docs/delivery.md, prerequisites)"
  done
  # kubectl reaches GKE only through this plugin; without it every call fails with
  # "executable gke-gcloud-auth-plugin not found".
  command -v gke-gcloud-auth-plugin >/dev/null ||
    die "gke-gcloud-auth-plugin is not on PATH: run 'gcloud components install gke-gcloud-auth-plugin' (or install the google-cloud-cli-gke-gcloud-auth-plugin package)"

  # Argo CD pulls this repository from GitHub, so the Applications must name the fork, in
  # this working copy and, what counts, on main as GitHub serves it.
  mismatch="$(url_mismatch .)"
  [[ -z "$mismatch" ]] || die "${mismatch}; first run: ${SET_REPO_FIX}"

  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT

  log "reading main of ${REPO_URL}"
  git init --quiet --bare "$work/remote.git"
  git -C "$work/remote.git" fetch --quiet --depth=1 "$REPO_URL" main 2>"$work/fetch.log" ||
    die "could not fetch main of ${REPO_URL} ($(tail -n 1 "$work/fetch.log")); create the fork and push it first: git push origin main"
  mkdir "$work/remote"
  git -C "$work/remote.git" cat-file -e FETCH_HEAD:argocd 2>/dev/null ||
    die "main of ${REPO_URL} has no argocd/ directory; push your fork first: git push origin main"
  git -C "$work/remote.git" archive FETCH_HEAD argocd | tar -x -C "$work/remote"
  mismatch="$(url_mismatch "$work/remote")"
  [[ -z "$mismatch" ]] ||
    die "on GitHub, ${mismatch}; Argo CD reads GitHub, not this copy: ${SET_REPO_FIX} (or just git push origin main if you already committed it)"
  git -C "$work/remote.git" cat-file -e "FETCH_HEAD:.github/workflows/${RELEASE_WORKFLOW}" 2>/dev/null ||
    die "main of ${REPO_URL} has no .github/workflows/${RELEASE_WORKFLOW}, the workflow the provider trusts; push it first: git push origin main"

  # Names can be given up and registered again by someone else; GitHub's numeric ids are
  # never re-used, so the provider trusts those (google-github-actions/auth, "Security
  # considerations").
  GH_CANONICAL="$GH_REPOSITORY"
  if [[ -z "$GH_REPOSITORY_ID" ]]; then
    command -v gh >/dev/null ||
      die "gh is not on PATH: install the GitHub CLI, or pass --github-repository-id and --github-owner-id (the \"id\" and \"owner.id\" of https://api.github.com/repos/${GH_REPOSITORY})"
    answer="$(gh api "repos/${GH_REPOSITORY}" --jq '"\(.id) \(.owner.id) \(.full_name)"' 2>"$work/gh.log")" ||
      die "gh could not read github.com/${GH_REPOSITORY} ($(tail -n 1 "$work/gh.log")); check the name and 'gh auth status', or pass --github-repository-id and --github-owner-id"
    read -r GH_REPOSITORY_ID GH_OWNER_ID GH_CANONICAL <<<"$answer"
    [[ "$GH_REPOSITORY_ID" =~ ^[0-9]+$ && "$GH_OWNER_ID" =~ ^[0-9]+$ ]] ||
      die "gh answered '${answer}' for repos/${GH_REPOSITORY}, not the repository's ids"
    # GitHub redirects a renamed repository; the token would then carry the new name.
    [[ "$(normalize_url "$GH_CANONICAL")" == "$(normalize_url "$GH_REPOSITORY")" ]] ||
      die "GitHub serves ${GH_REPOSITORY} as ${GH_CANONICAL} (renamed or moved); run again with --github-owner ${GH_CANONICAL%%/*} --github-repo ${GH_CANONICAL#*/}"
  fi
  log "GitHub ids: repository ${GH_CANONICAL} = ${GH_REPOSITORY_ID}, owner = ${GH_OWNER_ID}"
  GH_REPOSITORY="$GH_CANONICAL"

  ARGOCD_RENDERED="$work/argocd-install.yaml"
  log "Argo CD ${ARGOCD_VERSION}: checking and rendering argocd/install"
  scripts/argocd-install.sh --output "$ARGOCD_RENDERED" ${ARGOCD_MANIFEST:+--from "$ARGOCD_MANIFEST"} ||
    die "Argo CD's install manifest did not check out (above); nothing was created"
fi

# --- Google Cloud ----------------------------------------------------------------------------

section "APIs"
# Enabling an enabled API is a no-op, so this needs no describe.
run gcloud services enable \
  artifactregistry.googleapis.com compute.googleapis.com container.googleapis.com \
  iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com \
  cloudresourcemanager.googleapis.com \
  --project="$PROJECT_ID"

section "project number (Workload Identity principals name the project by number)"
if ((DRY_RUN)); then
  run gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)'
  PROJECT_NUMBER="<project-number>"
else
  PROJECT_NUMBER="$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')"
  [[ "$PROJECT_NUMBER" =~ ^[0-9]+$ ]] || die "could not read the project number of $PROJECT_ID"
fi
readonly POOL_NAME="projects/${PROJECT_NUMBER}/locations/global/workloadIdentityPools/${POOL}"
readonly PROVIDER_NAME="${POOL_NAME}/providers/${PROVIDER}"
# Every token the provider accepts (the condition below) comes from this repository; the
# binding names it by id, which GitHub never gives to another repository.
readonly REPO_PRINCIPAL="principalSet://iam.googleapis.com/${POOL_NAME}/attribute.repository_id/${GH_REPOSITORY_ID}"

# Display names and descriptions, each within what gcloud documents for it.
readonly REGISTRY_DESCRIPTION="Iris API images, pushed by GitHub Actions"
readonly NODE_SA_DISPLAY="Iris GKE nodes"
readonly NODE_SA_DESCRIPTION="Runs the nodes of GKE cluster ${CLUSTER}; pulls images from ${REGISTRY}"
readonly RELEASE_SA_DISPLAY="Iris release (GitHub Actions)"
readonly RELEASE_SA_DESCRIPTION="Pushes images to ${REGISTRY} for ${GH_REPOSITORY}, ${RELEASE_WORKFLOW} on main"
readonly POOL_DISPLAY="GitHub Actions"
readonly POOL_DESCRIPTION="OIDC tokens of GitHub Actions runs"
readonly PROVIDER_DISPLAY="Release workflow on main"
readonly PROVIDER_DESCRIPTION="${GH_REPOSITORY} (id ${GH_REPOSITORY_ID}), ${RELEASE_WORKFLOW} on main"
readonly ADDRESS_DESCRIPTION="Public address of the iris-api Service in iris-production"
# gcloud iam workload-identity-pools create/providers create-oidc --help: display name at
# most 32 characters, description at most 256. IAM ServiceAccount: display name at most 100,
# description at most 256.
check_length "pool display name" "$POOL_DISPLAY" 32
check_length "pool description" "$POOL_DESCRIPTION" 256
check_length "provider display name" "$PROVIDER_DISPLAY" 32
check_length "provider description" "$PROVIDER_DESCRIPTION" 256
check_length "service account display name" "$NODE_SA_DISPLAY" 100
check_length "service account display name" "$RELEASE_SA_DISPLAY" 100
check_length "service account description" "$NODE_SA_DESCRIPTION" 256
check_length "service account description" "$RELEASE_SA_DESCRIPTION" 256

section "Artifact Registry repository ${REGISTRY} (Docker, immutable tags)"
REGISTRY_DESCRIBE=(gcloud artifacts repositories describe "$REGISTRY" --location="$REGION" --project="$PROJECT_ID")
# Immutable tags: a sha-<commit> tag, once pushed, always names the same digest.
ensure "Artifact Registry repository ${REGISTRY}" \
  "${REGISTRY_DESCRIBE[@]}" \
  -- \
  gcloud artifacts repositories create "$REGISTRY" --repository-format=docker \
  --location="$REGION" --immutable-tags --description="$REGISTRY_DESCRIPTION" --project="$PROJECT_ID"
converge "immutable tags on ${REGISTRY}" True 'value(dockerConfig.immutableTags)' \
  "${REGISTRY_DESCRIBE[@]}" \
  -- \
  gcloud artifacts repositories update "$REGISTRY" --location="$REGION" --immutable-tags \
  --project="$PROJECT_ID"

section "node service account ${NODE_SA_EMAIL}: what GKE nodes run as, and pull images with"
# Organisations created after 2024-05-03 give the Compute Engine default service account no
# role at all, so nodes running as it get 403 on every image pull. The nodes get their own
# account with the one role GKE documents for node accounts, plus read on this repository.
ensure "service account ${NODE_SA_EMAIL}" \
  gcloud iam service-accounts describe "$NODE_SA_EMAIL" --project="$PROJECT_ID" \
  -- \
  gcloud iam service-accounts create "$NODE_SA_NAME" \
  --display-name="$NODE_SA_DISPLAY" --description="$NODE_SA_DESCRIPTION" --project="$PROJECT_ID"
ensure_binding "container.defaultNodeServiceAccount for ${NODE_SA_EMAIL}" \
  gcloud projects get-iam-policy "$PROJECT_ID" --flatten='bindings[].members' \
  --filter="bindings.role=roles/container.defaultNodeServiceAccount AND bindings.members=serviceAccount:${NODE_SA_EMAIL}" \
  --format='value(bindings.members)' \
  -- \
  gcloud projects add-iam-policy-binding "$PROJECT_ID" \
  --member="serviceAccount:${NODE_SA_EMAIL}" --role=roles/container.defaultNodeServiceAccount \
  --condition=None
ensure_binding "artifactregistry.reader for ${NODE_SA_EMAIL} on ${REGISTRY}" \
  gcloud artifacts repositories get-iam-policy "$REGISTRY" --location="$REGION" \
  --project="$PROJECT_ID" --flatten='bindings[].members' \
  --filter="bindings.role=roles/artifactregistry.reader AND bindings.members=serviceAccount:${NODE_SA_EMAIL}" \
  --format='value(bindings.members)' \
  -- \
  gcloud artifacts repositories add-iam-policy-binding "$REGISTRY" --location="$REGION" \
  --member="serviceAccount:${NODE_SA_EMAIL}" --role=roles/artifactregistry.reader \
  --project="$PROJECT_ID"

CLUSTER_DESCRIBE=(gcloud container clusters describe "$CLUSTER" --location="$REGION" --project="$PROJECT_ID")
if ((STANDARD)); then
  section "GKE Standard cluster ${CLUSTER} (Dataplane V2, nodes as ${NODE_SA_EMAIL})"
  # Regional: one e2-standard-2 node per zone to start, room for the production pods.
  # Dataplane V2 enforces NetworkPolicy, as Autopilot always does; without it the overlays'
  # policies would be accepted and silently ignored. Managed collection (Managed Service for
  # Prometheus) runs the collectors and rule evaluator that the overlays' PodMonitoring and
  # Rules need; Autopilot always has it, Standard gets it asked for explicitly.
  ensure "GKE cluster ${CLUSTER}" \
    "${CLUSTER_DESCRIBE[@]}" \
    -- \
    gcloud container clusters create "$CLUSTER" --location="$REGION" \
    --release-channel=regular --machine-type=e2-standard-2 --num-nodes=1 \
    --enable-autoscaling --min-nodes=1 --max-nodes=2 --enable-dataplane-v2 \
    --enable-managed-prometheus \
    --service-account="$NODE_SA_EMAIL" --project="$PROJECT_ID"
else
  section "GKE Autopilot cluster ${CLUSTER} (nodes as ${NODE_SA_EMAIL})"
  ensure "GKE cluster ${CLUSTER}" \
    "${CLUSTER_DESCRIBE[@]}" \
    -- \
    gcloud container clusters create-auto "$CLUSTER" --location="$REGION" \
    --release-channel=regular --service-account="$NODE_SA_EMAIL" --project="$PROJECT_ID"
fi
# A cluster's node account cannot be changed in place. One made before this account existed
# (or by hand) is left as it is, with the way out.
if ((!DRY_RUN)); then
  node_accounts="$("${CLUSTER_DESCRIBE[@]}" \
    --format='value(nodeConfig.serviceAccount,autoscaling.autoprovisioningNodePoolDefaults.serviceAccount)' || true)"
  if [[ "$node_accounts" != *"$NODE_SA_EMAIL"* ]]; then
    log "WARNING: cluster ${CLUSTER} runs its nodes as '${node_accounts//$'\t'/ }', not ${NODE_SA_EMAIL}."
    log "  If pods fail with ErrImagePull 403, give that account roles/artifactregistry.reader on ${REGISTRY}, or delete the cluster and run this again."
  fi
fi

section "regional static IP ${ADDRESS_NAME} for the production LoadBalancer"
# Reserved apart from the Service, so the address survives the Service being re-created
# and can be put in DNS; the Service asks for it by name.
ensure "address ${ADDRESS_NAME}" \
  gcloud compute addresses describe "$ADDRESS_NAME" --region="$REGION" --project="$PROJECT_ID" \
  -- \
  gcloud compute addresses create "$ADDRESS_NAME" --region="$REGION" \
  --description="$ADDRESS_DESCRIPTION" --project="$PROJECT_ID"

section "Workload Identity pool ${POOL} and GitHub OIDC provider ${PROVIDER}"
POOL_DESCRIBE=(gcloud iam workload-identity-pools describe "$POOL" --location=global --project="$PROJECT_ID")
ensure "workload identity pool ${POOL}" \
  "${POOL_DESCRIBE[@]}" \
  -- \
  gcloud iam workload-identity-pools create "$POOL" --location=global \
  --display-name="$POOL_DISPLAY" --description="$POOL_DESCRIPTION" --project="$PROJECT_ID"
undelete_if_deleted "workload identity pool ${POOL}" "${POOL_DESCRIBE[@]}" \
  -- \
  gcloud iam workload-identity-pools undelete "$POOL" --location=global --project="$PROJECT_ID"

# GitHub signs tokens for every repository with one issuer, so the condition is what makes
# this provider accept only this repository (by id, owner by id), only its main branch, and
# only jobs defined in the release workflow there: no other workflow of the repository, and
# no pull request, can mint a token that pushes images.
readonly JOB_WORKFLOW_REF="${GH_REPOSITORY}/.github/workflows/${RELEASE_WORKFLOW}@refs/heads/main"
readonly ATTRIBUTE_CONDITION="assertion.repository_id=='${GH_REPOSITORY_ID}' && assertion.repository_owner_id=='${GH_OWNER_ID}' && assertion.ref=='refs/heads/main' && assertion.job_workflow_ref=='${JOB_WORKFLOW_REF}'"
# google.subject is at most 127 bytes (create-oidc --help); GitHub's `sub` claim holds the
# owner and repository names (up to 139 characters), so the subject is built from the id.
readonly ATTRIBUTE_MAPPING="attribute.job_workflow_ref=assertion.job_workflow_ref,attribute.ref=assertion.ref,attribute.repository=assertion.repository,attribute.repository_id=assertion.repository_id,attribute.repository_owner_id=assertion.repository_owner_id,google.subject='repository_id:'+assertion.repository_id+':'+assertion.ref"
# create-oidc --help: the condition is at most 4096 characters.
check_length "attribute condition" "$ATTRIBUTE_CONDITION" 4096
PROVIDER_DESCRIBE=(gcloud iam workload-identity-pools providers describe "$PROVIDER"
  --workload-identity-pool="$POOL" --location=global --project="$PROJECT_ID")
ensure "OIDC provider ${PROVIDER}" \
  "${PROVIDER_DESCRIBE[@]}" \
  -- \
  gcloud iam workload-identity-pools providers create-oidc "$PROVIDER" \
  --workload-identity-pool="$POOL" --location=global \
  --display-name="$PROVIDER_DISPLAY" --description="$PROVIDER_DESCRIPTION" \
  --issuer-uri="$GITHUB_OIDC_ISSUER" \
  --attribute-mapping="$ATTRIBUTE_MAPPING" \
  --attribute-condition="$ATTRIBUTE_CONDITION" \
  --project="$PROJECT_ID"
undelete_if_deleted "OIDC provider ${PROVIDER}" "${PROVIDER_DESCRIBE[@]}" \
  -- \
  gcloud iam workload-identity-pools providers undelete "$PROVIDER" \
  --workload-identity-pool="$POOL" --location=global --project="$PROJECT_ID"
# An existing provider keeps whatever condition it was made with, until updated: a provider
# from an earlier run, or another repository id, would otherwise go on rejecting (or
# accepting) tokens as before.
PROVIDER_UPDATE=(gcloud iam workload-identity-pools providers update-oidc "$PROVIDER"
  --workload-identity-pool="$POOL" --location=global
  --display-name="$PROVIDER_DISPLAY" --description="$PROVIDER_DESCRIPTION"
  --attribute-mapping="$ATTRIBUTE_MAPPING" --attribute-condition="$ATTRIBUTE_CONDITION"
  --project="$PROJECT_ID")
converge "attribute condition of ${PROVIDER}" "$ATTRIBUTE_CONDITION" 'value(attributeCondition)' \
  "${PROVIDER_DESCRIBE[@]}" -- "${PROVIDER_UPDATE[@]}"
converge "attribute mapping of ${PROVIDER}" "$ATTRIBUTE_MAPPING" 'value(attributeMapping)' \
  "${PROVIDER_DESCRIBE[@]}" -- "${PROVIDER_UPDATE[@]}"

section "release service account ${SA_EMAIL}: push to ${REGISTRY}, nothing else"
ensure "service account ${SA_EMAIL}" \
  gcloud iam service-accounts describe "$SA_EMAIL" --project="$PROJECT_ID" \
  -- \
  gcloud iam service-accounts create "$SA_NAME" \
  --display-name="$RELEASE_SA_DISPLAY" --description="$RELEASE_SA_DESCRIPTION" --project="$PROJECT_ID"

# Writer on this one repository only; no project-level role.
ensure_binding "artifactregistry.writer for ${SA_EMAIL} on ${REGISTRY}" \
  gcloud artifacts repositories get-iam-policy "$REGISTRY" --location="$REGION" \
  --project="$PROJECT_ID" --flatten='bindings[].members' \
  --filter="bindings.role=roles/artifactregistry.writer AND bindings.members=serviceAccount:${SA_EMAIL}" \
  --format='value(bindings.members)' \
  -- \
  gcloud artifacts repositories add-iam-policy-binding "$REGISTRY" --location="$REGION" \
  --member="serviceAccount:${SA_EMAIL}" --role=roles/artifactregistry.writer \
  --project="$PROJECT_ID"

# Lets the release workflow's runs act as the service account (short-lived tokens).
ensure_binding "workloadIdentityUser for repository id ${GH_REPOSITORY_ID} on ${SA_EMAIL}" \
  gcloud iam service-accounts get-iam-policy "$SA_EMAIL" --project="$PROJECT_ID" \
  --flatten='bindings[].members' \
  --filter="bindings.role=roles/iam.workloadIdentityUser AND bindings.members=${REPO_PRINCIPAL}" \
  --format='value(bindings.members)' \
  -- \
  gcloud iam service-accounts add-iam-policy-binding "$SA_EMAIL" \
  --member="$REPO_PRINCIPAL" --role=roles/iam.workloadIdentityUser \
  --project="$PROJECT_ID"
# Any other principal of this pool on the account is left over from earlier inputs (another
# repository id, or the repository name an earlier version bound): remove it, so only the
# wanted principal can act as the account. Principals of other pools are not ours to touch.
if ((DRY_RUN)); then
  echo "# then remove from roles/iam.workloadIdentityUser on ${SA_EMAIL} every other principal of ${POOL_NAME}"
else
  while read -r member; do
    [[ "$member" == principal*"://iam.googleapis.com/${POOL_NAME}/"* && "$member" != "$REPO_PRINCIPAL" ]] || continue
    log "removing stale binding: ${member}"
    gcloud iam service-accounts remove-iam-policy-binding "$SA_EMAIL" \
      --member="$member" --role=roles/iam.workloadIdentityUser --project="$PROJECT_ID" >/dev/null
  done < <(gcloud iam service-accounts get-iam-policy "$SA_EMAIL" --project="$PROJECT_ID" \
    --flatten='bindings[].members' --filter="bindings.role=roles/iam.workloadIdentityUser" \
    --format='value(bindings.members)')
fi

# --- Cloud Monitoring dashboard --------------------------------------------------------------

readonly DASHBOARD_FILE="monitoring/dashboard.json"
# The file's sha256 (first 32 hex digits) travels in this label of the dashboard: a re-run
# updates the dashboard only when the file changed since, and otherwise calls nothing.
readonly DASHBOARD_LABEL="source_sha256"

# Creates the dashboard from monitoring/dashboard.json, or updates the one found by its
# display name, passing the etag it was listed with (the API refuses the update if the
# dashboard changed in between). Two dashboards of that name are ambiguous: refused.
apply_dashboard() {
  section "Cloud Monitoring dashboard '${DASHBOARD_DISPLAY_NAME}' from ${DASHBOARD_FILE}"
  grep -qF "\"displayName\": \"${DASHBOARD_DISPLAY_NAME}\"" "$DASHBOARD_FILE" ||
    die "${DASHBOARD_FILE} is not the dashboard '${DASHBOARD_DISPLAY_NAME}'"
  local body sum labelled
  # On one line: JSON allows a line break only between tokens, and one command line reads
  # better in logs.
  body="$(tr -d '\n' <"$DASHBOARD_FILE")"
  [[ "$body" == "{"* ]] || die "${DASHBOARD_FILE} is not a JSON object"
  sum="$(if command -v sha256sum >/dev/null; then sha256sum "$DASHBOARD_FILE"; else shasum -a 256 "$DASHBOARD_FILE"; fi)"
  sum="${sum:0:32}"
  labelled="\"labels\": {\"${DASHBOARD_LABEL}\": \"${sum}\"},${body#\{}"
  run gcloud services enable monitoring.googleapis.com --project="$PROJECT_ID"
  local list=(gcloud monitoring dashboards list --project="$PROJECT_ID"
    --filter="displayName=\"${DASHBOARD_DISPLAY_NAME}\""
    --format="value(name,etag,displayName,labels.${DASHBOARD_LABEL})")
  if ((DRY_RUN)); then
    run "${list[@]}"
    echo "# none listed: gcloud monitoring dashboards create --config=<${DASHBOARD_FILE} with labels.${DASHBOARD_LABEL}=${sum}> --project=${PROJECT_ID}"
    echo "# one with another ${DASHBOARD_LABEL}: gcloud monitoring dashboards update <its name> --config=<the same, with its etag> --project=${PROJECT_ID}"
    return 0
  fi
  local listing found=() name etag live display
  listing="$("${list[@]}")" || die "could not list the dashboards of ${PROJECT_ID} (above)"
  # The filter may match words rather than the whole name; keep exact matches only. The label
  # comes last: read merges adjacent tabs, so an empty field anywhere else would shift the rest.
  while IFS=$'\t' read -r name etag display live; do
    [[ "$display" == "$DASHBOARD_DISPLAY_NAME" ]] && found+=("${name}"$'\t'"${etag}"$'\t'"${live}")
  done <<<"$listing"
  if ((${#found[@]} == 0)); then
    log "creating: dashboard '${DASHBOARD_DISPLAY_NAME}'"
    gcloud monitoring dashboards create --config="{${labelled}" --project="$PROJECT_ID" >/dev/null
  elif ((${#found[@]} == 1)); then
    IFS=$'\t' read -r name etag live <<<"${found[0]}"
    if [[ "$live" == "$sum" ]]; then
      log "up to date: dashboard '${DASHBOARD_DISPLAY_NAME}'"
    else
      [[ "$etag" =~ ^[A-Za-z0-9_-]+$ ]] || die "dashboard ${name} was listed without a usable etag ('${etag}')"
      log "updating: dashboard ${name} (was: ${live:-not from ${DASHBOARD_FILE}})"
      gcloud monitoring dashboards update "$name" --config="{\"etag\": \"${etag}\", ${labelled}" \
        --project="$PROJECT_ID" >/dev/null
    fi
  else
    die "${#found[@]} dashboards are named '${DASHBOARD_DISPLAY_NAME}' in ${PROJECT_ID}; delete all but one (gcloud monitoring dashboards list --project=${PROJECT_ID} --filter='displayName=\"${DASHBOARD_DISPLAY_NAME}\"'), then run this again"
  fi
}
apply_dashboard

# --- Argo CD ---------------------------------------------------------------------------------

section "cluster credentials (kubectl context ${KUBE_CONTEXT})"
run gcloud container clusters get-credentials "$CLUSTER" --location="$REGION" --project="$PROJECT_ID"

section "Argo CD ${ARGOCD_VERSION} from argocd/install (checked and rendered above)"
# Server-side apply: declarative, so re-applying the same manifest changes nothing, and the
# CRDs exceed the 256 KiB last-applied annotation that client-side apply would write.
run "${KUBECTL[@]}" apply --server-side --force-conflicts -f "$ARGOCD_RENDERED"
for workload in deployment/argocd-repo-server deployment/argocd-server statefulset/argocd-application-controller; do
  run "${KUBECTL[@]}" rollout status --namespace=argocd "$workload" --timeout=600s
done

# The keys argocd/install/argocd-notifications-cm.patch.yaml reads ($github-app-id, ...).
# Built by kubectl from the file and applied server-side under a field manager of its own:
# the key goes from the file to the API server only (never to the terminal, a plan or Git),
# re-running changes nothing, and re-applying install.yaml (whose Secret has no data) keeps it.
if [[ -n "$APP_KEY_FILE" ]]; then
  section "Argo CD Notifications: the GitHub App's id, installation id and key (from ${APP_KEY_FILE}) in Secret argocd/${NOTIFICATIONS_SECRET}"
  secret=("${KUBECTL[@]}" create secret generic "$NOTIFICATIONS_SECRET" --namespace=argocd
    --from-literal=github-app-id="$APP_ID"
    --from-literal=github-installation-id="$APP_INSTALLATION_ID"
    --from-file=github-privateKey="$APP_KEY_FILE"
    --dry-run=client --output=yaml)
  apply=("${KUBECTL[@]}" apply --server-side --force-conflicts --field-manager=iris-bootstrap
    --namespace=argocd -f -)
  if ((DRY_RUN)); then
    echo "$(quote "${secret[@]}") | $(quote "${apply[@]}")"
  else
    "${secret[@]}" | "${apply[@]}" >/dev/null
    log "set: Secret argocd/${NOTIFICATIONS_SECRET} (keys github-app-id, github-installation-id, github-privateKey)"
  fi
else
  section "Argo CD Notifications: no GitHub App given (--github-app-id, --github-app-installation-id, --github-app-key); no commit statuses until it is"
fi

section "root application (Argo CD then creates the AppProject and both environments from Git)"
run "${KUBECTL[@]}" apply --namespace=argocd -f argocd/root.yaml

# --- what to do next -------------------------------------------------------------------------

WIF_PROVIDER_VALUE="$PROVIDER_NAME"
# In a dry run these notes are comments, so the whole plan stays a valid shell script.
notes() { if ((DRY_RUN)); then sed 's/^/# /'; else cat; fi; }
notes <<EOF

Set these repository variables in GitHub (Settings > Secrets and variables > Actions >
Variables); none of them is a secret:

  GCP_PROJECT_ID=${PROJECT_ID}
  GCP_REGION=${REGION}
  GAR_REPOSITORY=${REGISTRY}
  WIF_PROVIDER=${WIF_PROVIDER_VALUE}
  WIF_SERVICE_ACCOUNT=${SA_EMAIL}

or with the GitHub CLI:

  gh variable set GCP_PROJECT_ID --repo ${GH_REPOSITORY} --body ${PROJECT_ID}
  gh variable set GCP_REGION --repo ${GH_REPOSITORY} --body ${REGION}
  gh variable set GAR_REPOSITORY --repo ${GH_REPOSITORY} --body ${REGISTRY}
  gh variable set WIF_PROVIDER --repo ${GH_REPOSITORY} --body ${WIF_PROVIDER_VALUE}
  gh variable set WIF_SERVICE_ACCOUNT --repo ${GH_REPOSITORY} --body ${SA_EMAIL}

Only jobs of .github/workflows/${RELEASE_WORKFLOW} on main of ${GH_REPOSITORY}
(repository id ${GH_REPOSITORY_ID}, owner id ${GH_OWNER_ID}) can push images.

Open the Argo CD UI (user admin):

  kubectl --context=${KUBE_CONTEXT} -n argocd port-forward service/argocd-server 8080:443
  kubectl --context=${KUBE_CONTEXT} -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d; echo
  # then browse https://localhost:8080 (self-signed certificate)

EOF

if ((DRY_RUN)); then
  echo "# then wait up to ${IP_WAIT_SECONDS}s for the external IP of service/iris-api in iris-production"
  exit 0
fi

log "waiting up to ${IP_WAIT_SECONDS}s for the production Service's external IP"
deadline=$((SECONDS + IP_WAIT_SECONDS))
ip=""
while :; do
  ip="$("${KUBECTL[@]}" get service iris-api --namespace=iris-production \
    -o jsonpath='{.status.loadBalancer.ingress[0].ip}' 2>/dev/null || true)"
  [[ -n "$ip" ]] && break
  ((SECONDS < deadline)) || break
  sleep 10
done
if [[ -n "$ip" ]]; then
  cat <<EOF
Production Service address: ${ip} (reserved as ${ADDRESS_NAME})

  curl -s http://${ip}/predict -H 'Content-Type: application/json' \\
    -d '{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}'

Until the first release has run, the overlays hold a placeholder image, the pods cannot
start and the address refuses connections (docs/delivery.md, troubleshooting).
EOF
else
  cat <<EOF >&2
No external IP after ${IP_WAIT_SECONDS}s. Argo CD may not have synced yet, or the load
balancer is still being provisioned. Check:

  kubectl --context=${KUBE_CONTEXT} -n argocd get applications
  kubectl --context=${KUBE_CONTEXT} -n iris-production get service iris-api
EOF
fi
