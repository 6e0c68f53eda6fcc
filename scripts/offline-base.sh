#!/usr/bin/env bash
# Builds a substitute for the Dockerfile's base image, for builders that cannot reach Docker
# Hub (an air-gapped network, a machine whose only way out is a package mirror).
#
#   scripts/offline-base.sh [--force] [TAG]        (default TAG: iris-offline-base:bookworm)
#   docker build --network host --build-arg PYTHON_IMAGE=iris-offline-base:bookworm .
#
# It is NOT python:3.11-slim-bookworm: it is Debian bookworm (debootstrap --variant=minbase
# from this machine's Debian mirror) with Debian's own python3.11 and python3.11-venv, so
# Python 3.11.2 at /usr/bin/python3.11 instead of the official image's newer 3.11.x at
# /usr/local/bin. It carries this machine's CA bundle, because pip inside the build verifies
# TLS against /etc/ssl/certs/ca-certificates.crt, and a builder behind a TLS-inspecting proxy
# only trusts the proxy through its own bundle.
#
# Needs root (debootstrap), debootstrap and a Docker engine. An existing TAG is kept unless
# --force is given; a failed run leaves no image and no files behind.
#
# Environment:
#   DEBIAN_MIRROR   the archive to bootstrap from; default: the first Debian archive (not
#                   security, not updates) in APT_SOURCES_DIR
#   APT_SOURCES_DIR where to look for it (default /etc/apt): sources.list.d/*.sources
#                   (deb822) first, then sources.list
#   CA_BUNDLE       the bundle to carry (default /etc/ssl/certs/ca-certificates.crt)
#   DEBIAN_KEYRING  the key the mirror's Release file must verify against (default Debian's
#                   archive keyring, /usr/share/keyrings/debian-archive-keyring.gpg)
set -euo pipefail
shopt -s inherit_errexit

readonly suite=bookworm
# python3-distutils: it provides the python3.11-distutils that python3.11-venv depends on,
# and debootstrap does not resolve virtual packages.
readonly packages=python3.11,python3.11-venv,python3-distutils

fail() {
  echo "offline-base: $*" >&2
  exit 1
}

force=0
tag=iris-offline-base:${suite}
while (($#)); do
  case "$1" in
    --force) force=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    -*) fail "unknown option $1 (usage: $0 [--force] [TAG])" ;;
    *) tag="$1" ;;
  esac
  shift
done

# The first URI of a main Debian archive: deb822 stanzas (blank-line separated) with a deb
# type and a suite without a dash (bookworm, not bookworm-security), then one-line entries.
configured_mirror() {
  local dir="$1" file
  for file in "$dir"/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    awk '
      function flush() {
        if (uri != "" && types ~ /(^| )deb( |$)/ && enabled != "no" && main) { print uri; found = 1; exit }
        uri = ""; types = ""; enabled = ""; main = 0
      }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "types:" { $1 = ""; types = $0 " " }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i !~ /-/) main = 1 }
      END { if (!found) flush() }
    ' "$file" | head -n1
  done | head -n1
  for file in "$dir"/sources.list "$dir"/sources.list.d/*.list; do
    [[ -f "$file" ]] || continue
    # deb [options] URI suite component...
    awk '$1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i + 1) !~ /-/) { print $i; exit }
    }' "$file"
  done | head -n1
}

[[ "$(id -u)" -eq 0 ]] || fail "debootstrap needs root; run it as root (e.g. sudo $0)"
command -v debootstrap >/dev/null || fail "debootstrap is missing: apt-get install -y debootstrap"
docker info >/dev/null 2>&1 || fail "no Docker engine answers 'docker info': start dockerd first"

if ((!force)) && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "offline-base: ${tag} exists; keeping it (--force rebuilds it)"
  exit 0
fi

keyring="${DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}"
[[ -f "$keyring" ]] || fail "${keyring} is missing: apt-get install -y debian-archive-keyring"
ca_bundle="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -s "$ca_bundle" ]] || fail "no CA bundle at ${ca_bundle} (set CA_BUNDLE)"
mirror="${DEBIAN_MIRROR:-$(configured_mirror "${APT_SOURCES_DIR:-/etc/apt}")}"
[[ -n "$mirror" ]] ||
  fail "no Debian archive configured in ${APT_SOURCES_DIR:-/etc/apt}; set DEBIAN_MIRROR=<URI>"

work="$(mktemp -d "${TMPDIR:-/tmp}/offline-base.XXXXXX")"
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() { rm -rf --one-file-system "$work"; }
trap cleanup EXIT
root="$work/rootfs"

echo "offline-base: debootstrap ${suite} (minbase + ${packages}) from ${mirror}"
# --keyring: the Release file must verify against Debian's archive key, whatever the mirror.
debootstrap --variant=minbase --include="$packages" --keyring="$keyring" \
  "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 20 "$work/debootstrap.log" "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
  fail "debootstrap failed (last lines above)"
}

install -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
# What the build does not need and what belongs to this machine, not to an image: the
# downloaded packages, apt's lists (the Dockerfile runs apt-get update), the host's resolver
# and name (Docker provides both at run time).
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/* \
  "$root"/etc/resolv.conf "$root"/etc/hostname
: >"$root/etc/resolv.conf"

version="$(chroot "$root" /usr/bin/python3.11 -c 'import platform; print(platform.python_version())')"

echo "offline-base: importing as ${tag} (Python ${version})"
tar --numeric-owner -C "$root" -c . |
  docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL org.opencontainers.image.description=\"Substitute for python:3.11-slim-${suite}: Debian ${suite} minbase with Debian's Python ${version}\"" \
    --change 'CMD ["python3.11"]' \
    --message "debootstrap ${suite} minbase + ${packages}" \
    - "$tag" >/dev/null
echo "offline-base: built ${tag} ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}'))"
