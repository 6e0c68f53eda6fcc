#!/usr/bin/env bash
# `make kind-up`: the whole GitOps set-up on a local kind cluster, deploying this checkout's
# HEAD commit the way GKE runs main. Fast failures first:
#
#   1. preflight (scripts/kind/preflight.sh): tools, Docker's CPUs and memory, kind version,
#      cgroup v2, cloud-provider-kind; seconds
#   2. the image of HEAD built, pushed to the local registry and its digest read back
#      (scripts/kind/image.sh), before any cluster exists
#   3. a kind cluster on the pinned node image (an existing cluster of that name is reused),
#      its nodes mirroring the image host to the local registry
#   4. metrics-server and Argo CD v3.5.1 from checksummed upstream manifests, and a git
#      daemon in the cluster
#   5. the work clone gets three commits: argocd/ pointed at the in-cluster git daemon
#      (python -m gitops set-repo), the kind sizing (scripts/kind/sizing), both overlays set
#      to the image (python -m gitops set-image / promote); pushed to the git daemon as main
#   6. the root Application applied; then wait until root, staging and production are
#      Synced and Healthy at that commit, and ask each environment for a prediction
#
# Then `make kind-loop` runs the release, promotion and rollback loop (scripts/kind/loop.sh);
# `make kind-down` deletes it all. On a failure the diagnostics bundle is written
# (scripts/kind/diagnose.sh).
set -Eeuo pipefail
# bash 4.4+: a failure inside $(...) stops the script too. macOS's bash 3.2 lacks it, so
# lib.sh never relies on it (its functions set variables instead of printing results).
shopt -s inherit_errexit 2>/dev/null || true
# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'on_error "$?" "$BASH_COMMAND"' ERR
trap finish EXIT

"${KIND_DIR}/preflight.sh"

# --- the image, before anything slow -----------------------------------------------------------

"${KIND_DIR}/image.sh" >/dev/null
source_sha="$(sed -n 's/^SOURCE_SHA=//p' "${STATE_FILE}")"
ref_a="$(sed -n 's/^REF_A=//p' "${STATE_FILE}")"

# --- cluster and registry ----------------------------------------------------------------------

if kind get clusters 2>/dev/null | grep -qx "${KIND_CLUSTER}"; then
  log "reusing kind cluster ${KIND_CLUSTER}"
  node_image="$(docker inspect --format '{{.Config.Image}}' "${KIND_CLUSTER}-control-plane" 2>/dev/null || true)"
  [[ "${node_image}" == "${KIND_NODE_IMAGE}" ]] ||
    log "warning: the cluster runs ${node_image:-an unknown node image}, not the pinned ${KIND_NODE_IMAGE}; 'make kind-down' and again to use the pinned one"
else
  log "creating kind cluster ${KIND_CLUSTER} (${KIND_NODE_IMAGE%@*})"
  kind create cluster --name "${KIND_CLUSTER}" --image "${KIND_NODE_IMAGE}" --wait 120s
fi

if ! docker inspect "${REGISTRY_CONTAINER}" >/dev/null 2>&1; then
  die "the registry on 127.0.0.1:${REGISTRY_PORT} is not the container ${REGISTRY_CONTAINER}, so the nodes cannot reach it: stop it, or set KIND_REGISTRY_PORT to a free port"
fi
registry_networks="$(docker inspect --format '{{json .NetworkSettings.Networks.kind}}' "${REGISTRY_CONTAINER}")"
if [[ "${registry_networks}" == "null" ]]; then
  docker network connect kind "${REGISTRY_CONTAINER}"
fi
# containerd on each node pulls ${IMAGE_HOST} from the registry container (kind node images
# from v0.27 read registry hosts from /etc/containerd/certs.d).
for node in $(kind get nodes --name "${KIND_CLUSTER}"); do
  docker exec "${node}" mkdir -p "/etc/containerd/certs.d/${IMAGE_HOST}"
  printf '[host."http://%s:5000"]\n  capabilities = ["pull", "resolve"]\n' "${REGISTRY_CONTAINER}" |
    docker exec -i "${node}" cp /dev/stdin "/etc/containerd/certs.d/${IMAGE_HOST}/hosts.toml"
done

# --- cluster add-ons -------------------------------------------------------------------------

log "metrics-server (the HorizontalPodAutoscalers need CPU metrics)"
metrics_dir="${DOWNLOAD_DIR}/metrics-server"
mkdir -p "${metrics_dir}"
fetch_pinned "${METRICS_SERVER_URL}" "${METRICS_SERVER_SHA256}" "${metrics_dir}/components.yaml"
cp "${KIND_DIR}/metrics-server/kustomization.yaml" "${metrics_dir}/kustomization.yaml"
k apply --kustomize "${metrics_dir}" >/dev/null

# The pinned upstream manifest that argocd/install/ builds on, without that kustomization's
# requests for GKE Autopilot (0.6 CPU that a 2-CPU node cannot spare; docs/delivery.md).
log "Argo CD ${ARGOCD_VERSION}"
fetch_pinned "${ARGOCD_INSTALL_URL}" "${ARGOCD_INSTALL_SHA256}" "${DOWNLOAD_DIR}/argocd-install.yaml"
k apply -f - >/dev/null <<<'{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}'
# Server-side apply: the CRDs exceed the size of the annotation client-side apply writes.
k apply --namespace argocd --server-side --force-conflicts -f "${DOWNLOAD_DIR}/argocd-install.yaml" >/dev/null
k wait --for=condition=Established crd/applications.argoproj.io crd/appprojects.argoproj.io --timeout=120s

# GKE installs these with managed collection; on kind they only let Argo CD sync the
# overlays' PodMonitoring and Rules (nothing scrapes or evaluates them here).
log "Managed Service for Prometheus CRDs (third_party/prometheus-engine)"
k apply --server-side \
  -f "${REPO_ROOT}/third_party/prometheus-engine/monitoring.googleapis.com_podmonitorings.yaml" \
  -f "${REPO_ROOT}/third_party/prometheus-engine/monitoring.googleapis.com_rules.yaml" >/dev/null
k wait --for=condition=Established crd/podmonitorings.monitoring.googleapis.com crd/rules.monitoring.googleapis.com --timeout=120s

log "git daemon (the repository Argo CD deploys from)"
k apply -f "${KIND_DIR}/git-server.yaml" >/dev/null

for workload in deployment/argocd-repo-server deployment/argocd-server statefulset/argocd-application-controller; do
  k --namespace argocd rollout status "${workload}" --timeout="${WAIT_SECONDS}s"
done
k --namespace "${GIT_NAMESPACE}" rollout status deployment/git-server --timeout="${WAIT_SECONDS}s"
k --namespace kube-system rollout status deployment/metrics-server --timeout="${WAIT_SECONDS}s"

# --- the repository Argo CD deploys ------------------------------------------------------------

gitops set-repo "${IN_CLUSTER_REPO_URL}"
commit_all "chore(kind): deploy from the in-cluster git daemon"
add_kind_sizing "${WORK_REPO}"
commit_all "chore(kind): size both environments for one small node"
gitops set-image staging "${ref_a}"
commit_all "deploy(staging): iris-api sha-${source_sha:0:12} (kind)"
staged_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"
# Production is pinned to the commit just made, in the same push: the bootstrap has nothing
# to gate. The pin committed in this repository names a commit whose overlay holds the
# placeholder image at GKE's size (3 pods of 0.5 CPU), so letting production sync it while
# staging earns its evidence would fill a 2-CPU node with pods that can never pull. --force
# says so; `make kind-loop` then promotes through the gate (--evidence argocd: staging's
# Application read from this cluster, no GitHub needed), refusals and soak included.
gitops promote staging production --force
commit_all "deploy(production): promote sha-${source_sha:0:12} (kind)"
deployed_sha="$(git -C "${WORK_REPO}" rev-parse HEAD)"

log "pushing main to the in-cluster repository"
git_through_port_forward push --quiet --force kind main

log "root Application (Argo CD creates the project and both environments from git)"
k apply --namespace argocd -f "${WORK_REPO}/argocd/root.yaml" >/dev/null
wait_app iris-root "${deployed_sha}"
wait_app iris-staging "${deployed_sha}" iris-staging
# Production syncs the commit it is pinned to, not the tip of main.
wait_app iris-production "${staged_sha}" iris-production

smoke iris-staging "${source_sha}"
smoke iris-production "${source_sha}"

lb_ip="$(k --namespace iris-production get service iris-api -o jsonpath='{.status.loadBalancer.ingress[0].ip}')"
if [[ -n "${KIND_CHECK_LB:-}" ]]; then
  # The LoadBalancer address is reachable from the host on Linux (not from macOS).
  curl --silent --show-error --fail --retry 10 --retry-delay 3 --retry-all-errors --max-time 5 \
    -H 'Content-Type: application/json' -d "${SAMPLE}" "http://${lb_ip}/predict" >/dev/null
  log "iris-production: POST http://${lb_ip}/predict answered through the LoadBalancer"
fi

cat <<EOF

kind cluster ${KIND_CLUSTER} runs ${ref_a}
in iris-staging and iris-production, synced by Argo CD from ${IN_CLUSTER_REPO_URL}.

  make kind-loop                                   # release, base change, gated promotion, hold, reverts
  kubectl --context ${KUBE_CONTEXT} -n argocd get applications
  kubectl --context ${KUBE_CONTEXT} -n iris-production get service iris-api   # EXTERNAL-IP ${lb_ip:-<none>}
  kubectl --context ${KUBE_CONTEXT} -n argocd port-forward service/argocd-server 8080:443
  kubectl --context ${KUBE_CONTEXT} -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d
  make kind-diagnose                               # the diagnostics bundle, into build/kind-diagnostics
  make kind-down                                   # delete the cluster and the registry
EOF
