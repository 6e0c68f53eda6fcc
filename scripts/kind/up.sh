#!/usr/bin/env bash
# `make kind-up`: the whole GitOps set-up on a local kind cluster, deploying this checkout's
# HEAD commit the way GKE runs main.
#
#   1. a local image registry and a kind cluster (an existing cluster of that name is reused)
#   2. metrics-server, Argo CD v3.5.1, and a git daemon in the cluster
#   3. a clone of HEAD with two commits on top: argocd/ pointed at the in-cluster git daemon
#      (python -m gitops set-repo), and both overlays set to the image built from HEAD
#      (python -m gitops set-image / promote); pushed to the git daemon as main
#   4. the root Application applied; then wait until root, staging and production are
#      Synced and Healthy at that commit, and ask each environment for a prediction
#
# Then `make kind-loop` bumps, rolls out, reverts; `make kind-down` deletes it all.
# Needs docker, kind (v0.27 or newer), kubectl, git, curl, and `make dev` for the GitOps
# tool. The production Service is a LoadBalancer: run cloud-provider-kind (docs/delivery.md)
# or production never becomes Healthy.
set -euo pipefail

# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap stop_port_forwards EXIT

require_tools docker kind kubectl git curl
"$PYTHON" -c 'import ruamel.yaml' 2>/dev/null ||
  die "$PYTHON cannot import the GitOps tool's dependencies; run 'make dev' (or set PYTHON)"
if [[ "$(git -C "$REPO_ROOT" rev-parse --is-shallow-repository)" == "true" ]]; then
  die "this clone is shallow; run 'git fetch --unshallow' (the in-cluster repository needs the history)"
fi
if [[ -z "${KIND_SKIP_LB_CHECK:-}" ]] && ! pgrep -f cloud-provider-kind >/dev/null 2>&1 &&
  [[ -z "$(docker ps --quiet --filter name=cloud-provider-kind 2>/dev/null)" ]]; then
  die "cloud-provider-kind is not running, so the production LoadBalancer would never get an address; start it in another terminal (docs/delivery.md) or set KIND_SKIP_LB_CHECK=1 if something else provides LoadBalancers"
fi

# --- registry and cluster --------------------------------------------------------------------

if [[ "$(docker inspect --format '{{.State.Running}}' "$REGISTRY_CONTAINER" 2>/dev/null || true)" != "true" ]]; then
  docker rm --force "$REGISTRY_CONTAINER" >/dev/null 2>&1 || true
  log "starting the local registry ${REGISTRY_CONTAINER} on 127.0.0.1:${REGISTRY_PORT}"
  docker run --detach --restart=always --publish "127.0.0.1:${REGISTRY_PORT}:5000" \
    --network bridge --name "$REGISTRY_CONTAINER" registry:2 >/dev/null
fi

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  log "reusing kind cluster ${KIND_CLUSTER}"
else
  log "creating kind cluster ${KIND_CLUSTER}"
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
fi

if [[ "$(docker inspect --format '{{json .NetworkSettings.Networks.kind}}' "$REGISTRY_CONTAINER")" == "null" ]]; then
  docker network connect kind "$REGISTRY_CONTAINER"
fi
# containerd on each node pulls ${IMAGE_HOST} from the registry container (kind node images
# from v0.27 read registry hosts from /etc/containerd/certs.d).
for node in $(kind get nodes --name "$KIND_CLUSTER"); do
  docker exec "$node" mkdir -p "/etc/containerd/certs.d/${IMAGE_HOST}"
  printf '[host."http://%s:5000"]\n  capabilities = ["pull", "resolve"]\n' "$REGISTRY_CONTAINER" |
    docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/${IMAGE_HOST}/hosts.toml"
done

# --- cluster add-ons -------------------------------------------------------------------------

log "metrics-server (the HorizontalPodAutoscalers need CPU metrics)"
k apply --kustomize "$KIND_DIR/metrics-server" >/dev/null

log "Argo CD ${ARGOCD_VERSION}"
k get namespace argocd >/dev/null 2>&1 || k create namespace argocd
k apply --namespace argocd --server-side --force-conflicts -f "$ARGOCD_INSTALL_URL" >/dev/null
k wait --for=condition=Established crd/applications.argoproj.io crd/appprojects.argoproj.io --timeout=120s
for workload in deployment/argocd-repo-server deployment/argocd-server statefulset/argocd-application-controller; do
  k --namespace argocd rollout status "$workload" --timeout="${WAIT_SECONDS}s"
done

log "git daemon (the repository Argo CD deploys from)"
k apply -f "$KIND_DIR/git-server.yaml" >/dev/null
k --namespace "$GIT_NAMESPACE" rollout status deployment/git-server --timeout="${WAIT_SECONDS}s"
k --namespace kube-system rollout status deployment/metrics-server --timeout="${WAIT_SECONDS}s"

# --- the repository Argo CD deploys ------------------------------------------------------------

source_sha="$(git -C "$REPO_ROOT" rev-parse HEAD)"
log "preparing ${WORK_REPO} from ${source_sha:0:12}"
rm -rf "$WORK_REPO"
mkdir -p "$WORK_REPO"
git -C "$WORK_REPO" init --quiet
git -C "$WORK_REPO" fetch --quiet "$REPO_ROOT" "$source_sha"
git -C "$WORK_REPO" checkout --quiet -B main FETCH_HEAD

log "building the image of ${source_sha:0:12}"
ref_a="$(build_and_push "$source_sha" "sha-${source_sha:0:12}")"

gitops set-repo "$IN_CLUSTER_REPO_URL"
commit_all "chore(kind): deploy from the in-cluster git daemon"
gitops set-image staging "$ref_a"
gitops promote staging production
commit_all "deploy: run sha-${source_sha:0:12} in staging and production (kind)"
deployed_sha="$(git -C "$WORK_REPO" rev-parse HEAD)"

log "pushing main to the in-cluster repository"
with_git_remote git -C "$WORK_REPO" push --quiet --force kind main

mkdir -p "$STATE_DIR"
{
  printf 'SOURCE_SHA=%s\n' "$source_sha"
  printf 'REF_A=%s\n' "$ref_a"
} >"$STATE_FILE"

log "root Application (Argo CD creates the project and both environments from git)"
k apply --namespace argocd -f "$WORK_REPO/argocd/root.yaml" >/dev/null
wait_app iris-root "$deployed_sha"
wait_app iris-staging "$deployed_sha"
wait_app iris-production "$deployed_sha"

smoke iris-staging "$source_sha"
smoke iris-production "$source_sha"

lb_ip="$(k --namespace iris-production get service iris-api -o jsonpath='{.status.loadBalancer.ingress[0].ip}')"
if [[ -n "${KIND_CHECK_LB:-}" ]]; then
  # The LoadBalancer address is reachable from the host on Linux (not from macOS).
  curl --silent --show-error --fail --retry 10 --retry-delay 3 --retry-all-errors --max-time 5 \
    -H 'Content-Type: application/json' -d "$SAMPLE" "http://${lb_ip}/predict" >/dev/null
  log "iris-production: POST http://${lb_ip}/predict answered through the LoadBalancer"
fi

cat <<EOF

kind cluster ${KIND_CLUSTER} runs ${ref_a}
in iris-staging and iris-production, synced by Argo CD from ${IN_CLUSTER_REPO_URL}.

  make kind-loop                                   # bump staging in git, roll out, git revert
  kubectl --context ${KUBE_CONTEXT} -n argocd get applications
  kubectl --context ${KUBE_CONTEXT} -n iris-production get service iris-api   # EXTERNAL-IP ${lb_ip:-<none>}
  kubectl --context ${KUBE_CONTEXT} -n argocd port-forward service/argocd-server 8080:443
  kubectl --context ${KUBE_CONTEXT} -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d
  make kind-down                                   # delete the cluster and the registry
EOF
