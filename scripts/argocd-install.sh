#!/usr/bin/env bash
# Renders argocd/install/ (Argo CD as this project installs it) into one manifest to apply,
# after checking every remote file it builds on against the sha256 recorded in
# argocd/install/remote-resources.sha256.
#
#   scripts/argocd-install.sh --output argocd.yaml              # download, verify, render
#   scripts/argocd-install.sh --from install.yaml --output ...  # use a copy you already have
#
# Why not `kubectl apply -k argocd/install`: kustomize fetches a remote resource itself and
# checks nothing about it. Here each remote file is fetched (or taken from --from), its sha256
# compared with the recorded one, and only then handed to kustomize as a local file, in a
# copy of the directory. Argo CD, if it manages itself from Git later, renders the same
# kustomization with the URL; the URL names a commit, so what it fetches is the same file.
#
# --from FILE (repeatable) is matched by content: a file whose sha256 is none of the recorded
# ones is refused, so a copy cannot stand in for a different file. Nothing is written unless
# everything checks out. KUSTOMIZE overrides the renderer (default: kubectl kustomize).
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly INSTALL_DIR="argocd/install"
readonly SUMS="${INSTALL_DIR}/remote-resources.sha256"

die() { echo "${0##*/}: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

output=""
from=()
while (($#)); do
  case "$1" in
    --output) output="${2:?--output needs a file}"; shift 2 ;;
    --from) from+=("${2:?--from needs a file}"); shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
done

sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

# The remote resources kustomization.yaml lists: `- https://...` items.
mapfile -t urls < <(sed -n 's/^[[:space:]]*-[[:space:]]*\(https\{0,1\}:\/\/[^[:space:]]*\)[[:space:]]*$/\1/p' \
  "${INSTALL_DIR}/kustomization.yaml")
((${#urls[@]})) || die "${INSTALL_DIR}/kustomization.yaml lists no remote resource"

# The recorded sums: "<sha256>  <url>" lines; '#' starts a comment.
declare -A want=()
while read -r sum url rest; do
  [[ -z "$sum" || "$sum" == \#* ]] && continue
  [[ "$sum" =~ ^[0-9a-f]{64}$ && -n "$url" && -z "$rest" ]] || die "${SUMS}: malformed line: ${sum} ${url} ${rest}"
  want["$url"]="$sum"
done <"$SUMS"
for url in "${urls[@]}"; do
  [[ -n "${want[$url]:-}" ]] || die "${url} has no sha256 in ${SUMS}; add '<sha256>  ${url}'"
done
for url in "${!want[@]}"; do
  printf '%s\n' "${urls[@]}" | grep -qxF -- "$url" || die "${SUMS} pins ${url}, which ${INSTALL_DIR}/kustomization.yaml does not use"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -R "$INSTALL_DIR" "$work/install"

# Local copies first, each matched to the URL whose recorded sum it has.
declare -A local_copy=()
for file in "${from[@]}"; do
  [[ -f "$file" ]] || die "--from ${file}: no such file"
  got="$(sha256_of "$file")"
  matched=""
  for url in "${urls[@]}"; do
    [[ "${want[$url]}" == "$got" ]] && { local_copy["$url"]="$file"; matched=1; }
  done
  [[ -n "$matched" ]] || die "--from ${file}: sha256 ${got} is none of those pinned in ${SUMS}; nothing was rendered"
done

kustomization="$(<"$work/install/kustomization.yaml")"
index=0
for url in "${urls[@]}"; do
  index=$((index + 1))
  name="remote-${index}.yaml"
  if [[ -n "${local_copy[$url]:-}" ]]; then
    cp "${local_copy[$url]}" "$work/install/$name"
  else
    curl --fail --silent --show-error --location --retry 3 --output "$work/install/$name" "$url" ||
      die "could not download ${url}; pass a copy with --from FILE"
  fi
  got="$(sha256_of "$work/install/$name")"
  [[ "$got" == "${want[$url]}" ]] ||
    die "checksum mismatch for ${url}: got ${got}, want ${want[$url]}; nothing was rendered"
  kustomization="${kustomization//"$url"/"$name"}"
done
printf '%s\n' "$kustomization" >"$work/install/kustomization.yaml"

read -r -a render <<<"${KUSTOMIZE:-kubectl kustomize}"
"${render[@]}" "$work/install" >"$work/rendered.yaml" || die "could not render ${INSTALL_DIR} (${render[*]})"
[[ -s "$work/rendered.yaml" ]] || die "rendering ${INSTALL_DIR} produced nothing"

if [[ -z "$output" ]]; then
  cat "$work/rendered.yaml"
else
  # Written next to its destination and renamed, so a reader never sees half a file.
  tmp="$(mktemp "${output}.XXXXXX")"
  cp "$work/rendered.yaml" "$tmp"
  mv "$tmp" "$output"
fi
