#!/usr/bin/env bash
# Prints what usually explains a failed kind loop: the applications, the pods and recent
# events of both environments, and the logs of Argo CD's repo server and the git daemon.
# e2e.yml runs it when a step fails; run it by hand the same way.
set -uo pipefail

# shellcheck source=scripts/kind/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

section() { printf '\n===== %s =====\n' "$*"; }

section "applications"
k --namespace argocd get applications -o wide
for app in iris-root iris-staging iris-production; do describe_app "$app" 2>&1; done
for namespace in iris-staging iris-production; do
  section "${namespace}: workloads and pods"
  k --namespace "$namespace" get deployment,replicaset,pod,service,hpa -o wide
  section "${namespace}: events"
  k --namespace "$namespace" get events --sort-by=.lastTimestamp | tail -n 40
done
section "argocd-repo-server log"
k --namespace argocd logs deployment/argocd-repo-server --tail=80
section "argocd-application-controller log"
k --namespace argocd logs statefulset/argocd-application-controller --tail=80
section "git daemon log"
k --namespace "$GIT_NAMESPACE" logs deployment/git-server --tail=40
exit 0
