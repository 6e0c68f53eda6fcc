#!/usr/bin/env bash
# scripts/gitops.sh <command> ...: `python -m gitops` in an environment of its own.
#
# The tool needs only ruamel.yaml. On first use (and whenever requirements/gitops.lock
# changes) this installs that lock, hashes required and wheels only, into .venv-gitops
# (GITOPS_VENV to put it elsewhere) with the interpreter in PYTHON (default python3.11),
# the same lock the workflows that write to the repository install. Arguments and exit
# status are those of `python -m gitops`; run `scripts/gitops.sh --help` for the commands.
set -euo pipefail
shopt -s inherit_errexit

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lock="$root/requirements/gitops.lock"
venv="${GITOPS_VENV:-$root/.venv-gitops}"
stamp="$venv/.installed"

if [[ ! -f "$stamp" || "$lock" -nt "$stamp" ]]; then
  python="${PYTHON:-python3.11}"
  if ! command -v "$python" >/dev/null; then
    echo "gitops: error: $python is not on PATH; set PYTHON to a Python 3.11 interpreter" >&2
    exit 2
  fi
  echo "gitops: installing requirements/gitops.lock (ruamel.yaml) into $venv" >&2
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  if ! {
    { [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"; } &&
      "$venv/bin/python" -m pip --disable-pip-version-check install --quiet \
        --require-hashes --only-binary=:all: --no-deps -r "$lock" &&
      "$venv/bin/python" -m pip --disable-pip-version-check check
  } >"$log" 2>&1; then
    cat "$log" >&2
    echo "gitops: error: could not install $lock into $venv (pip's output is above)" >&2
    exit 2
  fi
  rm -f "$log"
  trap - EXIT
  touch "$stamp"
fi

# Hints the tool prints name this script, the command that works on this machine.
GITOPS_COMMAND="${GITOPS_COMMAND:-scripts/gitops.sh}" PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" \
  exec "$venv/bin/python" -m gitops "$@"
