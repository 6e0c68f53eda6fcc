#!/usr/bin/env bash
# `make kind-diagnose`, and what kind-up and kind-loop run when they fail: writes everything
# that usually explains a failed kind loop into one folder (default build/kind-diagnostics;
# e2e.yml uploads it as an artifact):
#
#   summary.txt            each Application's sync, health, revision, conditions and last
#                          operation, and every pod that cannot be scheduled, pull or start
#   applications.yaml      the Applications as Argo CD stores them
#   <namespace>/           get -o wide, describe and events of iris-staging, iris-production,
#                          argocd, iris-git and kube-system; and the logs of Argo CD's
#                          application controller, repo server and server, of the git daemon
#                          and of metrics-server
#   nodes.txt              the nodes, what is allocated on them, and the pods of the cluster
#   kind-logs/             `kind export logs`: kubelet, containerd and control-plane logs
#   build-logs/, state.env the image build logs and the references the scripts recorded
#
# It keeps going past anything that fails (a namespace not created yet, a cluster already
# gone) and notes the failure in the file it would have written.
set -uo pipefail
shopt -s inherit_errexit 2>/dev/null || true
# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="${1:-${DIAGNOSTICS_DIR}}"
rm -rf "${out}"
mkdir -p "${out}"

# capture FILE COMMAND...: the command's output and errors into FILE, never failing.
capture() {
  local file="${out}/$1"
  shift
  mkdir -p "$(dirname "${file}")"
  { printf '$ %s\n' "$*" && "$@"; } >>"${file}" 2>&1 || printf '(exit %s)\n' "$?" >>"${file}"
  printf '\n' >>"${file}"
}

applications="$(k --namespace argocd get applications -o name 2>/dev/null | sed 's|.*/||')"

collected="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
{
  printf 'kind cluster %s, collected %s\n\n' "${KIND_CLUSTER}" "${collected}"
  for app in ${applications}; do
    k --namespace argocd get application "${app}" -o json | "${PYTHON}" "${KIND_DIR}/triage.py" application
  done
  [[ -n "${applications}" ]] || printf 'no Applications (Argo CD not installed, or the root Application not applied yet)\n'
  printf '\n'
  if pods="$(k get pods --all-namespaces -o json 2>&1)"; then
    "${PYTHON}" "${KIND_DIR}/triage.py" pods <<<"${pods}"
  else
    printf 'pods: %s\n' "${pods}"
  fi
} >"${out}/summary.txt" 2>&1

capture applications.yaml k --namespace argocd get applications,appprojects -o yaml
capture nodes.txt k get nodes -o wide
capture nodes.txt k describe nodes
capture nodes.txt k get pods --all-namespaces -o wide

for namespace in iris-staging iris-production argocd "${GIT_NAMESPACE}" kube-system; do
  capture "${namespace}/get.txt" k --namespace "${namespace}" get all,hpa,pdb,networkpolicy,jobs -o wide
  capture "${namespace}/describe.txt" k --namespace "${namespace}" describe pods,deployments,replicasets,services,hpa,jobs
  capture "${namespace}/events.txt" k --namespace "${namespace}" get events --sort-by=.lastTimestamp
done

logs() {
  local namespace="$1" workload="$2" name="${2#*/}"
  capture "${namespace}/${name}.log" k --namespace "${namespace}" logs "${workload}" --all-containers --timestamps --tail=2000
  capture "${namespace}/${name}.previous.log" k --namespace "${namespace}" logs "${workload}" --all-containers --timestamps --previous --tail=500
}
logs argocd statefulset/argocd-application-controller
logs argocd deployment/argocd-repo-server
logs argocd deployment/argocd-server
logs "${GIT_NAMESPACE}" deployment/git-server
logs kube-system deployment/metrics-server
for namespace in iris-staging iris-production; do
  logs "${namespace}" deployment/iris-api
done

capture kind-export.txt kind export logs "${out}/kind-logs" --name "${KIND_CLUSTER}"
[[ -d "${LOG_DIR}" ]] && cp -R "${LOG_DIR}" "${out}/build-logs"
[[ -f "${STATE_FILE}" ]] && cp "${STATE_FILE}" "${out}/state.env"

printf '%s\n' "${out}"
exit 0
