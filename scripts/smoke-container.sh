#!/usr/bin/env bash
# Starts the image the way the Deployment runs it and checks it serves.
#
#   scripts/smoke-container.sh IMAGE [GIT_REVISION]
#
# The container gets what the pod gets: a read-only root filesystem with a writable /tmp,
# no capabilities, no privilege escalation. It must become ready, answer a prediction,
# run as the fixed non-root user 10001, and (when GIT_REVISION is given) report that
# revision on /version. On failure the container's log is printed.
set -euo pipefail

image="${1:?usage: $0 IMAGE [GIT_REVISION]}"
revision="${2:-}"
ready_timeout="${SMOKE_READY_TIMEOUT:-90}"
readonly sample='{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}'

fail() {
  echo "smoke-container: FAIL: $*" >&2
  exit 1
}

# The user is fixed in the image itself, not only in the Deployment: anything that runs it
# without a securityContext (docker run, another platform) must not get root.
configured_user="$(docker image inspect --format '{{.Config.User}}' "$image")"
[[ "${configured_user%%:*}" == "10001" ]] || fail "image user is '${configured_user}', want 10001"

cid="$(docker run --detach --publish 127.0.0.1::8000 \
  --read-only --tmpfs /tmp:rw,size=128m \
  --cap-drop ALL --security-opt no-new-privileges \
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
echo "smoke-container: ${image} listening on ${base}"

deadline=$((SECONDS + ready_timeout))
until curl --silent --fail --max-time 2 --output /dev/null "${base}/readyz"; do
  [[ "$(docker inspect --format '{{.State.Running}}' "$cid")" == "true" ]] || fail "container exited before it was ready"
  ((SECONDS < deadline)) || fail "/readyz not 200 after ${ready_timeout}s"
  sleep 1
done
echo "smoke-container: ready"

# `docker exec` runs as the image's user whatever the server does, so read the owners of
# the server's own processes instead: PID 1 (gunicorn) and everything it forked. Their
# real, effective, saved and filesystem uids must all be 10001.
uids="$(docker exec "$cid" python -c '
import pathlib
procs = {}
for status in pathlib.Path("/proc").glob("[0-9]*/status"):
    try:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
    except OSError:
        continue  # the process ended while we looked
    procs[int(fields["Pid"])] = (int(fields["PPid"]), fields["Uid"].split())
server = {1}
while True:
    found = {pid for pid, (ppid, _) in procs.items() if ppid in server} - server
    if not found:
        break
    server |= found
for pid in sorted(server & procs.keys()):
    print(pid, *procs[pid][1])
')" || fail "could not read the owners of the server processes"
[[ -n "$uids" ]] || fail "found no server process in the container"
while read -r pid real effective saved filesystem; do
  for uid in "$real" "$effective" "$saved" "$filesystem"; do
    [[ "$uid" == "10001" ]] ||
      fail "process ${pid} runs as uid ${uid}, want 10001 (real/effective/saved/fs: ${real} ${effective} ${saved} ${filesystem})"
  done
done <<<"$uids"
echo "smoke-container: all $(wc -l <<<"$uids") server processes run as uid 10001"

body="$(curl --silent --show-error --fail --max-time 5 \
  -H 'Content-Type: application/json' -d "$sample" "${base}/predict")" || fail "POST /predict failed"
species="$(printf '%s' "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["species"])')" ||
  fail "POST /predict answered without a species: ${body}"
# This flower is the first row of the classic data set: a setosa by any sane model.
[[ "$species" == "setosa" ]] || fail "POST /predict said '${species}' for a setosa: ${body}"
echo "smoke-container: POST /predict -> ${species}"

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

echo "smoke-container: OK"
