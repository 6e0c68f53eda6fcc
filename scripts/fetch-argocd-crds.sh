#!/usr/bin/env bash
# Downloads the Application and AppProject CRDs of Argo CD v3.5.1, the schemas tests/argocd
# validates argocd/ against, and checks each against a pinned SHA-256 before keeping it.
# They stay out of the repository: CI fetches them into a temporary directory.
#
#   scripts/fetch-argocd-crds.sh DIR     # writes DIR/application-crd.yaml, DIR/appproject-crd.yaml
#   ARGOCD_CRDS_DIR=DIR make test
#
# The sums are those of manifests/crds/<file> at the v3.5.1 tag of argoproj/argo-cd. To move
# to another version, change ARGOCD_VERSION, the sums, and ARGOCD_VERSION in
# tests/argocd/support.py together.
set -euo pipefail

readonly ARGOCD_VERSION="v3.5.1"
readonly BASE_URL="https://raw.githubusercontent.com/argoproj/argo-cd/${ARGOCD_VERSION}/manifests/crds"

dest="${1:?usage: $0 DIR}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

# Everything is downloaded and checked before anything is written to DIR, so a failure
# leaves DIR as it was.
for entry in \
  application-crd.yaml=5dde0e229249b6b707beb98674c1deae3949d5c319a6c45b9f5a80c99618e40c \
  appproject-crd.yaml=ab225266944322750136f1198d93786e4a79a0e43c8d149abfba44da30a3eac8; do
  name="${entry%%=*}"
  want="${entry#*=}"
  curl --fail --silent --show-error --location --retry 3 --output "$work/$name" "${BASE_URL}/${name}"
  got="$(sha256_of "$work/$name")"
  if [[ "$got" != "$want" ]]; then
    echo "fetch-argocd-crds: checksum mismatch for ${name}: got ${got}, want ${want}" >&2
    exit 1
  fi
done

mkdir -p "$dest"
install -m 0644 "$work/application-crd.yaml" "$work/appproject-crd.yaml" "$dest/"
echo "fetch-argocd-crds: Argo CD ${ARGOCD_VERSION} CRDs in ${dest}"
