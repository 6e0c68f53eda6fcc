#!/usr/bin/env bash
# From an empty Google Cloud project to Argo CD syncing this repository on GKE.
#
#   scripts/gke-bootstrap.sh --project my-project --github-owner my-org --github-repo iris-gitops
#   scripts/gke-bootstrap.sh ... --dry-run     # print the plan, call nothing
#
# Safe to re-run: every resource is described before it is created, and what exists is
# left alone. No service-account key is ever created: GitHub Actions authenticates through
# Workload Identity Federation, limited to this one repository's main branch.
# docs/delivery.md walks through it; scripts/gke-teardown.sh removes what this creates.
set -euo pipefail

readonly ARGOCD_VERSION="v3.5.1"
# The upstream install manifest of that exact tag; server-side apply because its CRDs
# exceed the 256 KiB last-applied annotation that client-side apply writes.
readonly ARGOCD_INSTALL_URL="https://raw.githubusercontent.com/argoproj/argo-cd/${ARGOCD_VERSION}/manifests/install.yaml"
readonly GITHUB_OIDC_ISSUER="https://token.actions.githubusercontent.com"

# Paths in the plan (argocd/...) are relative to the repository root.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/gke-common.sh
source scripts/gke-common.sh

OWN_OPTIONS_HELP="Bootstrap only:
  --standard            create a GKE Standard cluster instead of Autopilot
  IP_WAIT_SECONDS [600] how long to wait for the production Service's external IP
  BIND_RETRY_SECONDS [15] pause between tries of an IAM binding a new account is not ready for"

STANDARD=0
own_option() {
  case "$1" in
    --standard) STANDARD=1 ;;
    *) return 1 ;;
  esac
}
IP_WAIT_SECONDS="${IP_WAIT_SECONDS:-600}"
BIND_RETRY_SECONDS="${BIND_RETRY_SECONDS:-15}"
parse_options "$@"
[[ "$IP_WAIT_SECONDS" =~ ^[0-9]+$ ]] || die "IP_WAIT_SECONDS must be a whole number of seconds"
[[ "$BIND_RETRY_SECONDS" =~ ^[0-9]+$ ]] || die "BIND_RETRY_SECONDS must be a whole number of seconds"
readonly REPO_URL="https://github.com/${GH_REPOSITORY}.git"

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

# --- preflight -----------------------------------------------------------------------------

if ((!DRY_RUN)); then
  for tool in gcloud kubectl; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH (docs/delivery.md, prerequisites)"
  done
  # kubectl reaches GKE only through this plugin; without it every call fails with
  # "executable gke-gcloud-auth-plugin not found".
  command -v gke-gcloud-auth-plugin >/dev/null ||
    die "gke-gcloud-auth-plugin is not on PATH: run 'gcloud components install gke-gcloud-auth-plugin' (or install the google-cloud-cli-gke-gcloud-auth-plugin package)"
fi

# Argo CD pulls this repository from GitHub, so the Applications must name the fork.
# GitHub URLs ignore case and the .git suffix; compare them the same way.
normalize_url() {
  local url
  url="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
  printf '%s' "${url%.git}"
}
url_mismatch=""
shopt -s nullglob
manifests=(argocd/*.yaml argocd/*/*.yaml)
shopt -u nullglob
((${#manifests[@]})) || die "no argocd/*.yaml found in $(pwd)"
for manifest in "${manifests[@]}"; do
  while IFS= read -r url; do
    if [[ "$(normalize_url "$url")" != "$(normalize_url "$REPO_URL")" ]]; then
      url_mismatch="${manifest} points Argo CD at ${url}, not ${REPO_URL}"
    fi
  done < <(sed -n 's/^[[:space:]]*-\{0,1\}[[:space:]]*repoURL:[[:space:]]*//p' "$manifest" | tr -d "\"'")
done
if [[ -n "$url_mismatch" ]]; then
  fix="run 'python -m gitops set-repo ${REPO_URL}', commit and push first"
  ((DRY_RUN)) || die "${url_mismatch}; ${fix}"
  echo "# WARNING: ${url_mismatch}; ${fix}"
fi

if ((DRY_RUN)); then
  echo "# gke-bootstrap plan for project ${PROJECT_ID}, region ${REGION}, repository ${GH_REPOSITORY}"
  echo "# (dry run: nothing was called; '<project-number>' is read from the project when run)"
fi

# --- Google Cloud ----------------------------------------------------------------------------

section "APIs"
# Enabling an enabled API is a no-op, so this needs no describe.
run gcloud services enable \
  artifactregistry.googleapis.com container.googleapis.com iam.googleapis.com \
  iamcredentials.googleapis.com sts.googleapis.com cloudresourcemanager.googleapis.com \
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
# Every workflow run of this repository, whatever the job; the provider condition below
# already limits tokens to the main branch of this repository.
readonly REPO_PRINCIPAL="principalSet://iam.googleapis.com/${POOL_NAME}/attribute.repository/${GH_REPOSITORY}"

section "Artifact Registry repository ${REGISTRY} (Docker, immutable tags)"
# Immutable tags: a sha-<commit> tag, once pushed, always names the same digest.
ensure "Artifact Registry repository ${REGISTRY}" \
  gcloud artifacts repositories describe "$REGISTRY" --location="$REGION" --project="$PROJECT_ID" \
  -- \
  gcloud artifacts repositories create "$REGISTRY" --repository-format=docker \
  --location="$REGION" --immutable-tags \
  --description="Iris API images, pushed by GitHub Actions" --project="$PROJECT_ID"

if ((STANDARD)); then
  section "GKE Standard cluster ${CLUSTER}"
  # Regional: one e2-standard-2 node per zone to start, room for the production pods.
  ensure "GKE cluster ${CLUSTER}" \
    gcloud container clusters describe "$CLUSTER" --location="$REGION" --project="$PROJECT_ID" \
    -- \
    gcloud container clusters create "$CLUSTER" --location="$REGION" \
    --release-channel=regular --machine-type=e2-standard-2 --num-nodes=1 \
    --enable-autoscaling --min-nodes=1 --max-nodes=2 --project="$PROJECT_ID"
else
  section "GKE Autopilot cluster ${CLUSTER}"
  ensure "GKE cluster ${CLUSTER}" \
    gcloud container clusters describe "$CLUSTER" --location="$REGION" --project="$PROJECT_ID" \
    -- \
    gcloud container clusters create-auto "$CLUSTER" --location="$REGION" \
    --release-channel=regular --project="$PROJECT_ID"
fi

section "Workload Identity pool ${POOL} and GitHub OIDC provider ${PROVIDER}"
POOL_DESCRIBE=(gcloud iam workload-identity-pools describe "$POOL" --location=global --project="$PROJECT_ID")
ensure "workload identity pool ${POOL}" \
  "${POOL_DESCRIBE[@]}" \
  -- \
  gcloud iam workload-identity-pools create "$POOL" --location=global \
  --display-name="GitHub Actions" --project="$PROJECT_ID"
undelete_if_deleted "workload identity pool ${POOL}" "${POOL_DESCRIBE[@]}" \
  -- \
  gcloud iam workload-identity-pools undelete "$POOL" --location=global --project="$PROJECT_ID"

# GitHub signs tokens for every repository with one issuer, so the condition is what makes
# this provider accept only this repository (and only its main branch, where release runs).
readonly ATTRIBUTE_CONDITION="assertion.repository=='${GH_REPOSITORY}' && assertion.ref=='refs/heads/main'"
PROVIDER_DESCRIBE=(gcloud iam workload-identity-pools providers describe "$PROVIDER"
  --workload-identity-pool="$POOL" --location=global --project="$PROJECT_ID")
ensure "OIDC provider ${PROVIDER}" \
  "${PROVIDER_DESCRIBE[@]}" \
  -- \
  gcloud iam workload-identity-pools providers create-oidc "$PROVIDER" \
  --workload-identity-pool="$POOL" --location=global \
  --display-name="GitHub ${GH_REPOSITORY}" \
  --issuer-uri="$GITHUB_OIDC_ISSUER" \
  --attribute-mapping="google.subject=assertion.sub,attribute.repository=assertion.repository,attribute.ref=assertion.ref" \
  --attribute-condition="$ATTRIBUTE_CONDITION" \
  --project="$PROJECT_ID"
undelete_if_deleted "OIDC provider ${PROVIDER}" "${PROVIDER_DESCRIBE[@]}" \
  -- \
  gcloud iam workload-identity-pools providers undelete "$PROVIDER" \
  --workload-identity-pool="$POOL" --location=global --project="$PROJECT_ID"

section "release service account ${SA_EMAIL}: push to ${REGISTRY}, nothing else"
ensure "service account ${SA_EMAIL}" \
  gcloud iam service-accounts describe "$SA_EMAIL" --project="$PROJECT_ID" \
  -- \
  gcloud iam service-accounts create "$SA_NAME" \
  --display-name="Iris release (GitHub Actions)" --project="$PROJECT_ID"

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

# Lets workflow runs of this repository act as the service account (short-lived tokens).
ensure_binding "workloadIdentityUser for ${GH_REPOSITORY} on ${SA_EMAIL}" \
  gcloud iam service-accounts get-iam-policy "$SA_EMAIL" --project="$PROJECT_ID" \
  --flatten='bindings[].members' \
  --filter="bindings.role=roles/iam.workloadIdentityUser AND bindings.members=${REPO_PRINCIPAL}" \
  --format='value(bindings.members)' \
  -- \
  gcloud iam service-accounts add-iam-policy-binding "$SA_EMAIL" \
  --member="$REPO_PRINCIPAL" --role=roles/iam.workloadIdentityUser \
  --project="$PROJECT_ID"

# --- Argo CD ---------------------------------------------------------------------------------

section "cluster credentials (kubectl context ${KUBE_CONTEXT})"
run gcloud container clusters get-credentials "$CLUSTER" --location="$REGION" --project="$PROJECT_ID"

section "Argo CD ${ARGOCD_VERSION}"
ensure "namespace argocd" \
  "${KUBECTL[@]}" get namespace argocd \
  -- \
  "${KUBECTL[@]}" create namespace argocd
# Server-side apply is declarative: re-applying the same manifest changes nothing.
run "${KUBECTL[@]}" apply --namespace=argocd --server-side --force-conflicts -f "$ARGOCD_INSTALL_URL"
for workload in deployment/argocd-repo-server deployment/argocd-server statefulset/argocd-application-controller; do
  run "${KUBECTL[@]}" rollout status --namespace=argocd "$workload" --timeout=600s
done

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
Production Service address: ${ip}

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
