#!/usr/bin/env bash
# Removes what scripts/gke-bootstrap.sh created, in reverse order.
#
#   scripts/gke-teardown.sh --project my-project --github-owner my-org --dry-run
#   scripts/gke-teardown.sh --project my-project --github-owner my-org --yes
#
# The Argo CD applications are deleted first and waited for, so the production
# LoadBalancer's forwarding rule is released by the cluster that made it instead of being
# left behind. Anything already gone is skipped, so a half-finished teardown can be re-run.
# The enabled APIs stay enabled (other things in the project may use them).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/gke-common.sh
source scripts/gke-common.sh

OWN_OPTIONS_HELP="Teardown only:
  --yes                 do not ask for confirmation
  --keep-registry       keep the Artifact Registry repository and its images"

ASSUME_YES=0
KEEP_REGISTRY=0
own_option() {
  case "$1" in
    --yes) ASSUME_YES=1 ;;
    --keep-registry) KEEP_REGISTRY=1 ;;
    *) return 1 ;;
  esac
}
parse_options "$@"

# Describe before delete: `remove LABEL DESCRIBE... -- DELETE...` runs DELETE only when
# DESCRIBE succeeds.
remove() {
  local label="$1"
  shift
  split_at_dashdash "$@"
  if ((DRY_RUN)); then
    echo "$(quote "${FIRST[@]}") >/dev/null 2>&1 && $(quote "${SECOND[@]}")"
  elif "${FIRST[@]}" >/dev/null 2>&1; then
    log "deleting: ${label}"
    "${SECOND[@]}"
  else
    log "already gone: ${label}"
  fi
}

# Pools and providers stay describable for 30 days after deletion (state DELETED), so
# "exists" means state ACTIVE.
remove_active() {
  local label="$1"
  shift
  split_at_dashdash "$@"
  if ((DRY_RUN)); then
    echo "test \"\$($(quote "${FIRST[@]}" '--format=value(state)') 2>/dev/null)\" = ACTIVE && $(quote "${SECOND[@]}")"
  elif [[ "$("${FIRST[@]}" --format='value(state)' 2>/dev/null || true)" == "ACTIVE" ]]; then
    log "deleting: ${label}"
    "${SECOND[@]}"
  else
    log "already gone: ${label}"
  fi
}

# `remove_binding LABEL POLICY... -- REMOVE...` runs REMOVE only when POLICY (a filtered
# get-iam-policy) prints the member: removing a binding that is not there is an error.
remove_binding() {
  local label="$1"
  shift
  split_at_dashdash "$@"
  if ((DRY_RUN)); then
    echo "test -z \"\$($(quote "${FIRST[@]}") 2>/dev/null)\" || $(quote "${SECOND[@]}")"
  elif [[ -n "$("${FIRST[@]}" 2>/dev/null || true)" ]]; then
    log "removing: ${label}"
    "${SECOND[@]}" >/dev/null
  else
    log "already gone: ${label}"
  fi
}

# The filtered get-iam-policy of a repository or the project for one ROLE and MEMBER.
repository_policy() {
  POLICY=(gcloud artifacts repositories get-iam-policy "$REGISTRY" --location="$REGION"
    --project="$PROJECT_ID" --flatten='bindings[].members'
    --filter="bindings.role=$1 AND bindings.members=$2" --format='value(bindings.members)')
}

if ((DRY_RUN)); then
  echo "# gke-teardown plan for project ${PROJECT_ID}, region ${REGION}, repository ${GH_REPOSITORY}"
  echo "# (dry run: nothing was called)"
else
  for tool in gcloud kubectl; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH"
  done
  if ((!ASSUME_YES)); then
    [[ -t 0 ]] || die "refusing to delete without a terminal to confirm on; pass --yes"
    what="cluster ${CLUSTER}, address ${ADDRESS_NAME}, the Workload Identity pool ${POOL} and service accounts ${SA_EMAIL} and ${NODE_SA_EMAIL}"
    ((KEEP_REGISTRY)) || what+=", and Artifact Registry repository ${REGISTRY} with every image in it"
    echo "This deletes ${what} in project ${PROJECT_ID}."
    read -r -p "Type the project id to go on: " answer
    [[ "$answer" == "$PROJECT_ID" ]] || die "not confirmed; nothing deleted"
  fi
fi

CLUSTER_DESCRIBE=(gcloud container clusters describe "$CLUSTER" --location="$REGION" --project="$PROJECT_ID")

section "Argo CD applications (their finalizers delete the workloads and the load balancer)"
((DRY_RUN)) && echo "# (only while the cluster exists: $(quote "${CLUSTER_DESCRIBE[@]}"))"
if ((DRY_RUN)) || "${CLUSTER_DESCRIBE[@]}" >/dev/null 2>&1; then
  run gcloud container clusters get-credentials "$CLUSTER" --location="$REGION" --project="$PROJECT_ID"
  # The root application's finalizer deletes the per-environment applications, whose
  # finalizers delete what they deployed; --ignore-not-found keeps a re-run quiet.
  run "${KUBECTL[@]}" delete --namespace=argocd -f argocd/root.yaml --ignore-not-found --wait=true --timeout=600s
  # Named, so an application already gone counts as deleted.
  run "${KUBECTL[@]}" wait --namespace=argocd --for=delete \
    application/iris-staging application/iris-production --timeout=600s
  run "${KUBECTL[@]}" wait --namespace=iris-production --for=delete service/iris-api --timeout=300s
else
  log "already gone: GKE cluster ${CLUSTER}"
fi

section "GKE cluster ${CLUSTER}"
remove "GKE cluster ${CLUSTER}" \
  "${CLUSTER_DESCRIBE[@]}" \
  -- \
  gcloud container clusters delete "$CLUSTER" --location="$REGION" --project="$PROJECT_ID" --quiet

section "regional static IP ${ADDRESS_NAME} (released with the cluster's load balancer gone)"
remove "address ${ADDRESS_NAME}" \
  gcloud compute addresses describe "$ADDRESS_NAME" --region="$REGION" --project="$PROJECT_ID" \
  -- \
  gcloud compute addresses delete "$ADDRESS_NAME" --region="$REGION" --project="$PROJECT_ID" --quiet

section "Workload Identity provider ${PROVIDER} and pool ${POOL} (soft-deleted for 30 days)"
remove_active "OIDC provider ${PROVIDER}" \
  gcloud iam workload-identity-pools providers describe "$PROVIDER" \
  --workload-identity-pool="$POOL" --location=global --project="$PROJECT_ID" \
  -- \
  gcloud iam workload-identity-pools providers delete "$PROVIDER" \
  --workload-identity-pool="$POOL" --location=global --project="$PROJECT_ID" --quiet
remove_active "workload identity pool ${POOL}" \
  gcloud iam workload-identity-pools describe "$POOL" --location=global --project="$PROJECT_ID" \
  -- \
  gcloud iam workload-identity-pools delete "$POOL" --location=global --project="$PROJECT_ID" --quiet

section "release service account ${SA_EMAIL} and node service account ${NODE_SA_EMAIL}"
REGISTRY_DESCRIBE=(gcloud artifacts repositories describe "$REGISTRY" --location="$REGION" --project="$PROJECT_ID")
if ((KEEP_REGISTRY)); then
  # A kept repository would otherwise hold bindings to deleted accounts.
  repository_policy roles/artifactregistry.writer "serviceAccount:${SA_EMAIL}"
  remove_binding "artifactregistry.writer binding for ${SA_EMAIL}" \
    "${POLICY[@]}" \
    -- \
    gcloud artifacts repositories remove-iam-policy-binding "$REGISTRY" --location="$REGION" \
    --member="serviceAccount:${SA_EMAIL}" --role=roles/artifactregistry.writer \
    --project="$PROJECT_ID"
  repository_policy roles/artifactregistry.reader "serviceAccount:${NODE_SA_EMAIL}"
  remove_binding "artifactregistry.reader binding for ${NODE_SA_EMAIL}" \
    "${POLICY[@]}" \
    -- \
    gcloud artifacts repositories remove-iam-policy-binding "$REGISTRY" --location="$REGION" \
    --member="serviceAccount:${NODE_SA_EMAIL}" --role=roles/artifactregistry.reader \
    --project="$PROJECT_ID"
fi
remove "service account ${SA_EMAIL}" \
  gcloud iam service-accounts describe "$SA_EMAIL" --project="$PROJECT_ID" \
  -- \
  gcloud iam service-accounts delete "$SA_EMAIL" --project="$PROJECT_ID" --quiet
# The project would otherwise keep a binding to a deleted account (deleted:serviceAccount:...).
remove_binding "container.defaultNodeServiceAccount binding for ${NODE_SA_EMAIL}" \
  gcloud projects get-iam-policy "$PROJECT_ID" --flatten='bindings[].members' \
  --filter="bindings.role=roles/container.defaultNodeServiceAccount AND bindings.members=serviceAccount:${NODE_SA_EMAIL}" \
  --format='value(bindings.members)' \
  -- \
  gcloud projects remove-iam-policy-binding "$PROJECT_ID" \
  --member="serviceAccount:${NODE_SA_EMAIL}" --role=roles/container.defaultNodeServiceAccount \
  --condition=None
remove "service account ${NODE_SA_EMAIL}" \
  gcloud iam service-accounts describe "$NODE_SA_EMAIL" --project="$PROJECT_ID" \
  -- \
  gcloud iam service-accounts delete "$NODE_SA_EMAIL" --project="$PROJECT_ID" --quiet

if ((KEEP_REGISTRY)); then
  section "Artifact Registry repository ${REGISTRY}: kept (--keep-registry)"
else
  section "Artifact Registry repository ${REGISTRY} and every image in it"
  remove "Artifact Registry repository ${REGISTRY}" \
    "${REGISTRY_DESCRIBE[@]}" \
    -- \
    gcloud artifacts repositories delete "$REGISTRY" --location="$REGION" --project="$PROJECT_ID" --quiet
fi

section "Cloud Monitoring dashboard '${DASHBOARD_DISPLAY_NAME}'"
DASHBOARD_LIST=(gcloud monitoring dashboards list --project="$PROJECT_ID"
  --filter="displayName=\"${DASHBOARD_DISPLAY_NAME}\"" --format="value(name,displayName)")
if ((DRY_RUN)); then
  run "${DASHBOARD_LIST[@]}"
  echo "# then, for each listed with exactly that name: gcloud monitoring dashboards delete <its name> --project=${PROJECT_ID} --quiet"
else
  listing="$("${DASHBOARD_LIST[@]}")" || die "could not list the dashboards of ${PROJECT_ID} (above)"
  deleted=0
  # The filter may match words rather than the whole name; delete exact matches only.
  while IFS=$'\t' read -r name display; do
    [[ -n "$name" && "$display" == "$DASHBOARD_DISPLAY_NAME" ]] || continue
    log "deleting: dashboard ${name}"
    gcloud monitoring dashboards delete "$name" --project="$PROJECT_ID" --quiet
    deleted=1
  done <<<"$listing"
  ((deleted)) || log "already gone: dashboard '${DASHBOARD_DISPLAY_NAME}'"
fi

if ((!DRY_RUN)); then
  cat <<EOF
Done. Remove the repository variables GCP_PROJECT_ID, GCP_REGION, GAR_REPOSITORY,
WIF_PROVIDER and WIF_SERVICE_ACCOUNT from ${GH_REPOSITORY}, or the next release fails at
authentication. The Workload Identity pool and provider keep their ids for 30 days; running
gke-bootstrap.sh again in that time restores them.
EOF
fi
