#!/usr/bin/env bash
# Installs promtool and prometheus from the Prometheus 2.53.4 release (the long-term-support
# line), for tests/monitoring: promtool checks and unit-tests the rules, prometheus runs the
# live check (tests/monitoring/test_live_prometheus.py). The download is checked against a
# pinned SHA-256 before it is unpacked.
#
#   scripts/install-promtool.sh DIR     # installs DIR/promtool and DIR/prometheus
#
# The checksum is the one published with the release (sha256sums.txt); the same value is
# pinned by other projects that install this tarball. Only linux-amd64 (the GitHub runners)
# is pinned; elsewhere use the distribution's package (Debian/Ubuntu: prometheus).
# To move to another version, change both and take the new sum from its sha256sums.txt.
set -euo pipefail

readonly PROMETHEUS_VERSION="2.53.4"

dest="${1:?usage: $0 DIR}"

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) platform=linux-amd64 sha256=b8b497c4610d1b93208252b60c8f20f6b2e78596ae8df43397a2e805aa53d475 ;;
  *) echo "install-promtool: no pinned checksum for $(uname -s)/$(uname -m); install your distribution's prometheus package" >&2; exit 1 ;;
esac

name="prometheus-${PROMETHEUS_VERSION}.${platform}"
url="https://github.com/prometheus/prometheus/releases/download/v${PROMETHEUS_VERSION}/${name}.tar.gz"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

curl --fail --silent --show-error --location --retry 3 --output "$work/${name}.tar.gz" "$url"
actual="$(sha256sum "$work/${name}.tar.gz")"
if [[ "${actual%% *}" != "$sha256" ]]; then
  echo "install-promtool: checksum mismatch for ${name}.tar.gz: got ${actual%% *}, want $sha256" >&2
  exit 1
fi

tar -xzf "$work/${name}.tar.gz" -C "$work" "${name}/promtool" "${name}/prometheus"
mkdir -p "$dest"
install -m 0755 "$work/${name}/promtool" "$work/${name}/prometheus" "$dest/"
"$dest/promtool" --version
"$dest/prometheus" --version
