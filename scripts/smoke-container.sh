#!/usr/bin/env bash
# Starts the image the way the Deployment runs it and checks it serves (`make image-test`).
#
#   scripts/smoke-container.sh IMAGE [GIT_REVISION]
#
# The container gets what the pod gets: UID/GID 10001, a read-only root filesystem with a
# writable /tmp, no capabilities, no privilege escalation, the pod's CPU and memory limits.
# It must become ready within the cold-start target, predict each species, refuse a bad
# body with a 4xx, run every server process as 10001, hold no compiler and no training-only
# library, and (when GIT_REVISION is given) report that revision on /version. It prints the
# cold start, the image and venv sizes and the workers' memory. On failure the container's
# log is printed.
#
# Environment (defaults are deploy/base/deployment.yaml's limits):
#   SMOKE_CPUS=0.5 SMOKE_MEMORY=512m   the container's limits
#   SMOKE_COLD_START_TARGET=40         seconds from `docker run` to the first ready answer: two
#                                      thirds of the startup probe's 60 s, at the pod's CPU limit
#   SMOKE_READY_TIMEOUT=90             seconds to wait before giving up altogether
set -euo pipefail
shopt -s inherit_errexit

image="${1:?usage: $0 IMAGE [GIT_REVISION]}"
revision="${2:-}"
cpus="${SMOKE_CPUS:-0.5}"
memory="${SMOKE_MEMORY:-512m}"
cold_start_target="${SMOKE_COLD_START_TARGET:-40}"
ready_timeout="${SMOKE_READY_TIMEOUT:-90}"

fail() {
  echo "smoke-container: FAIL: $*" >&2
  exit 1
}

# The user is fixed in the image itself, not only in the Deployment: anything that runs it
# without a securityContext (docker run, another platform) must not get root.
read -r image_bytes configured_user < <(docker image inspect --format '{{.Size}} {{.Config.User}}' "$image") ||
  fail "no image ${image}"
[[ "${configured_user:-}" == "10001:10001" ]] || fail "image user is '${configured_user:-}', want 10001:10001"

started_ns="$(date +%s%N)"
cid="$(docker run --detach --publish 127.0.0.1::8000 \
  --user 10001:10001 \
  --read-only --tmpfs /tmp:rw,size=128m \
  --cap-drop ALL --security-opt no-new-privileges \
  --cpus "$cpus" --memory "$memory" \
  "$image")"
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
  local status=$?
  if ((status != 0)); then
    echo "--- container log ---" >&2
    docker logs "$cid" >&2 || true
  fi
  docker rm --force "$cid" >/dev/null || true
}
trap cleanup EXIT

# The host port docker picked, so parallel runs never collide.
port="$(docker port "$cid" 8000/tcp | head -n1)"
port="${port##*:}"
base="http://127.0.0.1:${port}"
echo "smoke-container: ${image} listening on ${base} (cpus ${cpus}, memory ${memory})"

# Polled often, so the cold start is measured to a tenth of a second.
deadline=$((SECONDS + ready_timeout))
until curl --silent --fail --max-time 2 --output /dev/null "${base}/readyz"; do
  [[ "$(docker inspect --format '{{.State.Running}}' "$cid")" == "true" ]] || fail "container exited before it was ready"
  ((SECONDS < deadline)) || fail "/readyz not 200 after ${ready_timeout}s"
  sleep 0.1
done
cold_start_ms=$((($(date +%s%N) - started_ns) / 1000000))
cold_start="$(printf '%d.%d' $((cold_start_ms / 1000)) $((cold_start_ms % 1000 / 100)))"
((cold_start_ms <= cold_start_target * 1000)) ||
  fail "cold start ${cold_start}s (docker run to /readyz 200) exceeds the target of ${cold_start_target}s"
echo "smoke-container: ready: cold start ${cold_start}s (target ${cold_start_target}s)"

# One look inside, as the image's user. `docker exec` runs as that user whatever the server
# does, so it reads the owners of the server's own processes instead: PID 1 (gunicorn) and
# everything it forked, whose real, effective, saved and filesystem uids must all be 10001.
# It also lists any compiler on the standard paths and any training-only library the
# image's python can import, and sizes the venv.
probe="$(docker exec "$cid" python -c '
import importlib.util, os, pathlib, shutil
procs = {}
for status in pathlib.Path("/proc").glob("[0-9]*/status"):
    try:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    except OSError:
        continue  # the process ended while we looked
    rss = fields.get("VmRSS", "0 kB").split()[0]
    procs[int(fields["Pid"])] = (int(fields["PPid"]), fields["Uid"].split(), rss)
server = {1}
while True:
    found = {pid for pid, (ppid, _, _) in procs.items() if ppid in server} - server
    if not found:
        break
    server |= found
for pid in sorted(server & procs.keys()):
    ppid, uids, rss = procs[pid]
    print("process", pid, ppid, *uids, rss)
path = "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
for name in ("cc", "gcc", "g++", "c++", "clang", "tcc"):
    if shutil.which(name, path=path):
        print("compiler", shutil.which(name, path=path))
for name in ("pandas", "matplotlib"):
    if importlib.util.find_spec(name):
        print("module", name)
size = sum(f.stat().st_size for f in pathlib.Path("/opt/venv").rglob("*") if f.is_file() and not f.is_symlink())
print("venv", size)
')" || fail "could not look inside the container"

processes=0
workers_rss=()
venv_bytes=0
while read -r kind rest; do
  case "$kind" in
    process)
      read -r pid ppid real effective saved filesystem rss_kb <<<"$rest"
      for uid in "$real" "$effective" "$saved" "$filesystem"; do
        [[ "$uid" == "10001" ]] ||
          fail "process ${pid} runs as uid ${uid}, want 10001 (real/effective/saved/fs: ${real} ${effective} ${saved} ${filesystem})"
      done
      processes=$((processes + 1))
      if [[ "$ppid" == "1" ]]; then workers_rss+=("$((rss_kb / 1024))"); else master_rss=$((rss_kb / 1024)); fi
      ;;
    compiler) fail "the image holds a compiler: ${rest}" ;;
    module) fail "the image can import ${rest}, a training-only library" ;;
    venv) venv_bytes="$rest" ;;
  esac
done <<<"$probe"
((processes > 0)) || fail "found no server process in the container"
echo "smoke-container: all ${processes} server processes run as uid 10001"
echo "smoke-container: no compiler, no pandas, no matplotlib"

predict() {
  curl --silent --show-error --fail --max-time 5 \
    -H 'Content-Type: application/json' -d "$1" "${base}/predict"
}
# One flower of each species from the classic data set (rows 1, 51 and 101): far from the
# class boundaries, so any sane model names them.
while read -r want row; do
  body="$(predict "$row")" || fail "POST /predict failed for ${row}"
  species="$(printf '%s' "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["species"])')" ||
    fail "POST /predict answered without a species: ${body}"
  [[ "$species" == "$want" ]] || fail "POST /predict said '${species}' for a ${want}: ${body}"
  echo "smoke-container: POST /predict -> ${species}"
done <<'ROWS'
setosa {"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}
versicolor {"sepal_length":7.0,"sepal_width":3.2,"petal_length":4.7,"petal_width":1.4}
virginica {"sepal_length":6.3,"sepal_width":3.3,"petal_length":6.0,"petal_width":2.5}
ROWS

# A body the API must refuse with a 4xx naming the field, never a 5xx.
status="$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 5 \
  -H 'Content-Type: application/json' -d '{"sepal_length":"long"}' "${base}/predict")"
[[ "$status" == 4* ]] || fail "POST /predict with a bad body answered ${status}, want 4xx"
echo "smoke-container: bad input -> ${status}"

if [[ -n "$revision" ]]; then
  version="$(curl --silent --show-error --fail --max-time 5 "${base}/version")" || fail "GET /version failed"
  [[ "$version" == *"$revision"* ]] || fail "GET /version does not name revision ${revision}: ${version}"
  echo "smoke-container: GET /version names ${revision}"
fi

echo "smoke-container: image ${image_bytes} bytes ($((image_bytes / 1000000)) MB), /opt/venv ${venv_bytes} bytes ($((venv_bytes / 1000000)) MB)"
echo "smoke-container: RSS master ${master_rss:-?} MiB, workers ${workers_rss[*]:-none} MiB"
echo "smoke-container: OK"
