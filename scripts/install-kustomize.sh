#!/usr/bin/env bash
# Installs the kustomize that Argo CD v3.5.1 bundles, so what CI renders is what Argo CD
# will render. The download is checked against a pinned SHA-256 before it is unpacked.
#
#   scripts/install-kustomize.sh DIR     # installs DIR/kustomize
#
# The checksums are those of the upstream release's checksums.txt, as recorded in Argo CD
# v3.5.1 (hack/installers/checksums/kustomize_5.8.1_*.tar.gz.sha256). To move to another
# version, change both and take the new sums from the release's checksums.txt.
set -euo pipefail

readonly KUSTOMIZE_VERSION="5.8.1"

dest="${1:?usage: $0 DIR}"

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) platform=linux_amd64 sha256=029a7f0f4e1932c52a0476cf02a0fd855c0bb85694b82c338fc648dcb53a819d ;;
  Linux/aarch64 | Linux/arm64) platform=linux_arm64 sha256=0953ea3e476f66d6ddfcd911d750f5167b9365aa9491b2326398e289fef2c142 ;;
  Darwin/x86_64) platform=darwin_amd64 sha256=ee7cf0c1e3592aa7bb66ba82b359933a95e7f2e0b36e5f53ed0a4535b017f2f8 ;;
  Darwin/arm64) platform=darwin_arm64 sha256=8886f8a78474e608cc81234f729fda188a9767da23e28925802f00ece2bab288 ;;
  *) echo "install-kustomize: no pinned checksum for $(uname -s)/$(uname -m)" >&2; exit 1 ;;
esac

archive="kustomize_v${KUSTOMIZE_VERSION}_${platform}.tar.gz"
url="https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize/v${KUSTOMIZE_VERSION}/${archive}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

curl --fail --silent --show-error --location --retry 3 --output "$work/$archive" "$url"
if command -v sha256sum >/dev/null; then
  actual="$(sha256sum "$work/$archive")"
else
  actual="$(shasum -a 256 "$work/$archive")"
fi
if [[ "${actual%% *}" != "$sha256" ]]; then
  echo "install-kustomize: checksum mismatch for $archive: got ${actual%% *}, want $sha256" >&2
  exit 1
fi

tar -xzf "$work/$archive" -C "$work" kustomize
mkdir -p "$dest"
install -m 0755 "$work/kustomize" "$dest/kustomize"
"$dest/kustomize" version
