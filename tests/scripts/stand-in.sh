#!/usr/bin/env bash
# Recording stand-in for gcloud, kubectl, gh, curl and kustomize (tests only), installed under
# each of those names. Every call is appended to $FAKE_LOG, one tab-separated line.
# kubectl prints the Secret `create secret generic --dry-run=client` would make, and keeps
# what `apply -f -` reads under $FAKE_STATE_DIR/kubectl-applied/.
#
# gcloud keeps the little state our scripts ask about under $FAKE_STATE_DIR: which resources
# exist (and whether a pool or provider is soft-deleted), a provider's condition and mapping,
# a repository's immutable-tags flag, IAM bindings, and Cloud Monitoring dashboards. It
# refuses to create what exists and to update what does not, as gcloud does. That is enough to check the scripts' own logic
# (order, describe before create, convergence on a re-run); it says nothing about whether
# Google Cloud would accept a call.
#
# Knobs (environment):
#   FAKE_FAIL_FIRST=<words>  the first call containing them fails once (IAM propagation)
#   FAKE_GH=<id> <owner-id> <full-name>  what `gh api repos/...` answers; FAKE_GH=fail: 404
#   FAKE_CURL_FILE=<file>    what curl downloads (any URL); unset: no network
#   FAKE_RENDERED=<file>     what the kustomize stand-in prints
set -uo pipefail

tool="${0##*/}"
{ printf '%s' "$tool"; printf '\t%s' "$@"; printf '\n'; } >>"$FAKE_LOG"
args=" $* "

if [[ -n "${FAKE_FAIL_FIRST:-}" && "$args" == *"$FAKE_FAIL_FIRST"* && ! -e "$FAKE_LOG.failed" ]]; then
  touch "$FAKE_LOG.failed"
  echo "ERROR: (gcloud) INVALID_ARGUMENT: Service account does not exist." >&2
  exit 1
fi

# The value of --NAME=VALUE among the arguments (empty when absent).
flag() {
  local arg
  for arg in "${ARGV[@]}"; do
    [[ "$arg" == "--$1="* ]] && { printf '%s' "${arg#--"$1"=}"; return 0; }
  done
  return 0
}
ARGV=("$@")

fake_gcloud() {
  local verb="" name="" group=() word
  local verbs=" describe create create-auto create-oidc update-oidc update delete undelete get-iam-policy add-iam-policy-binding remove-iam-policy-binding enable get-credentials "
  for word in "$@"; do
    if [[ -z "$verb" && "$verbs" == *" $word "* ]]; then
      verb="$word"
    elif [[ -z "$verb" ]]; then
      group+=("$word")
    elif [[ -z "$name" && "$word" != -* ]]; then
      name="$word"
    fi
  done
  [[ "${group[*]}" == "services" || "$verb" == "get-credentials" ]] && return 0
  if [[ "${group[*]}" == "projects" && "$verb" == "describe" ]]; then
    [[ "$(flag format)" == "value(projectNumber)" ]] && echo "${FAKE_PROJECT_NUMBER:-123456789012}"
    return 0
  fi
  # A service account is created by name and named by email everywhere else.
  name="${name%%@*}"
  local kind="${group[*]}"
  local dir="${FAKE_STATE_DIR}/${kind// /_}/${name}"
  local state=""
  [[ -e "$dir/state" ]] && state="$(<"$dir/state")"
  case "$verb" in
    describe)
      [[ -n "$state" ]] || { echo "ERROR: (gcloud) NOT_FOUND: ${name}" >&2; return 1; }
      case "$(flag format)" in
        "value(state)") echo "$state" ;;
        "value(attributeCondition)") cat "$dir/condition" ;;
        "value(attributeMapping)")
          # gcloud prints a map as key=value pairs joined by ';', in key order.
          tr ',' '\n' <"$dir/mapping" | sort | paste -sd ';' ;;
        "value(dockerConfig.immutableTags)") [[ -e "$dir/immutable" ]] && echo True ;;
        "value(nodeConfig.serviceAccount,autoscaling.autoprovisioningNodePoolDefaults.serviceAccount)")
          cat "$dir/service-account" ;;
      esac
      return 0 ;;
    create | create-auto | create-oidc)
      [[ -z "$state" ]] || { echo "ERROR: (gcloud) ALREADY_EXISTS: ${name}" >&2; return 1; }
      mkdir -p "$dir"
      echo ACTIVE >"$dir/state"
      printf '%s' "$(flag attribute-condition)" >"$dir/condition"
      printf '%s' "$(flag attribute-mapping)" >"$dir/mapping"
      [[ "$args" == *" --immutable-tags "* ]] && touch "$dir/immutable"
      printf '%s' "$(flag service-account)" >"$dir/service-account"
      return 0 ;;
    update-oidc | update)
      [[ "$state" == ACTIVE ]] || { echo "ERROR: (gcloud) NOT_FOUND: ${name}" >&2; return 1; }
      [[ -n "$(flag attribute-condition)" ]] && printf '%s' "$(flag attribute-condition)" >"$dir/condition"
      [[ -n "$(flag attribute-mapping)" ]] && printf '%s' "$(flag attribute-mapping)" >"$dir/mapping"
      [[ "$args" == *" --immutable-tags "* ]] && touch "$dir/immutable"
      return 0 ;;
    undelete)
      [[ "$state" == DELETED ]] || { echo "ERROR: (gcloud) FAILED_PRECONDITION: ${name}" >&2; return 1; }
      echo ACTIVE >"$dir/state"
      return 0 ;;
    delete)
      [[ "$state" == ACTIVE ]] || { echo "ERROR: (gcloud) NOT_FOUND: ${name}" >&2; return 1; }
      # Workload Identity pools and providers stay, soft-deleted, for 30 days.
      if [[ "${group[*]}" == *workload-identity-pools* ]]; then echo DELETED >"$dir/state"; else rm -rf "$dir"; fi
      return 0 ;;
  esac
  # IAM policies; projects keep theirs under the project id.
  local role member filter
  touch "${dir}.bindings" 2>/dev/null || { mkdir -p "$(dirname "$dir")"; touch "${dir}.bindings"; }
  case "$verb" in
    get-iam-policy)
      filter="$(flag filter)"
      role="$(sed -n 's/.*bindings\.role=\([^ ]*\).*/\1/p' <<<"$filter")"
      member="$(sed -n 's/.*bindings\.members=\([^ ]*\).*/\1/p' <<<"$filter")"
      while read -r bound_role bound_member; do
        [[ "$bound_role" == "$role" ]] || continue
        [[ -z "$member" || "$bound_member" == "$member" ]] && echo "$bound_member"
      done <"${dir}.bindings"
      return 0 ;;
    add-iam-policy-binding)
      grep -qxF -- "$(flag role) $(flag member)" "${dir}.bindings" || echo "$(flag role) $(flag member)" >>"${dir}.bindings"
      return 0 ;;
    remove-iam-policy-binding)
      grep -vxF -- "$(flag role) $(flag member)" "${dir}.bindings" >"${dir}.bindings.new"
      mv "${dir}.bindings.new" "${dir}.bindings"
      return 0 ;;
  esac
  return 0
}

# Cloud Monitoring dashboards, one directory each under $FAKE_STATE_DIR/monitoring_dashboards
# holding the config sent (config.json) and its etag. create refuses an etag and assigns the
# name; update refuses an unknown name or an etag other than the stored one, as the API does,
# and delete an unknown name; list prints, tab-separated, the fields --format=value(...)
# names (name, etag, displayName, labels.source_sha256).
fake_dashboards() {
  python3 - "${FAKE_STATE_DIR}/monitoring_dashboards" "$@" <<'PY'
import hashlib, json, pathlib, sys
state, argv = pathlib.Path(sys.argv[1]), sys.argv[2:]
verb = argv[2]
flags = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
state.mkdir(parents=True, exist_ok=True)
def fail(message):
    print(f"ERROR: (gcloud.monitoring.dashboards.{verb}) {message}", file=sys.stderr)
    sys.exit(1)
def store(directory, config):
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "etag").write_text(hashlib.sha256(json.dumps(config).encode()).hexdigest()[:32])
if verb == "list":
    fields = flags["format"].removeprefix("value(").removesuffix(")").split(",")
    for directory in sorted(state.iterdir()):
        config = json.loads((directory / "config.json").read_text())
        known = {
            "name": f"projects/{flags['project']}/dashboards/{directory.name}",
            "etag": (directory / "etag").read_text(),
            "displayName": config["displayName"],
            "labels.source_sha256": config.get("labels", {}).get("source_sha256", ""),
        }
        print(*(known[field] for field in fields), sep="\t")
elif verb == "create":
    try:
        config = json.loads(flags["config"])
    except (KeyError, ValueError) as exc:
        fail(f"INVALID_ARGUMENT: {exc}")
    if "etag" in config:
        fail("INVALID_ARGUMENT: etag must not be set on create")
    store(state / f"d{len(list(state.iterdir())) + 1}", config)
elif verb == "delete":
    directory = state / argv[3].rsplit("/", 1)[-1]
    if not directory.is_dir():
        fail(f"NOT_FOUND: {argv[3]}")
    for stored in directory.iterdir():
        stored.unlink()
    directory.rmdir()
elif verb == "update":
    directory = state / argv[3].rsplit("/", 1)[-1]
    if not directory.is_dir():
        fail(f"NOT_FOUND: {argv[3]}")
    config = json.loads(flags["config"])
    if config.pop("etag", None) != (directory / "etag").read_text():
        fail("ABORTED: the etag does not match the dashboard's")
    store(directory, config)
PY
}

case "$tool" in
  gcloud)
    if [[ "${1-} ${2-}" == "monitoring dashboards" ]]; then fake_dashboards "$@"; exit; fi
    fake_gcloud "$@"; exit ;;
  kubectl)
    case "$args" in
      *" get service "*) printf '%s' "${FAKE_EXTERNAL_IP:-203.0.113.7}" ;;
      *" create secret generic "*" --dry-run=client "*)
        # What kubectl prints for the Secret it would create, data base64-encoded.
        name="" namespace="" data=() previous=""
        for arg in "$@"; do
          case "$arg" in
            --namespace=*) namespace="${arg#--namespace=}" ;;
            --from-literal=*)
              pair="${arg#--from-literal=}"
              data+=("  ${pair%%=*}: $(printf '%s' "${pair#*=}" | base64 -w0)") ;;
            --from-file=*)
              pair="${arg#--from-file=}"
              [[ -r "${pair#*=}" ]] || { echo "error: error reading ${pair#*=}: no such file or directory" >&2; exit 1; }
              data+=("  ${pair%%=*}: $(base64 -w0 <"${pair#*=}")") ;;
            *) [[ "$previous" == generic ]] && name="$arg" ;;
          esac
          previous="$arg"
        done
        printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n' "$name" "$namespace"
        printf '%s\n' "${data[@]}" ;;
      *" apply "*" -f - ")
        # Keeps what was applied from stdin, one file per apply, for the tests to read.
        mkdir -p "$FAKE_STATE_DIR/kubectl-applied"
        count=$(find "$FAKE_STATE_DIR/kubectl-applied" -type f | wc -l)
        cat >"$FAKE_STATE_DIR/kubectl-applied/$((count + 1)).yaml" ;;
    esac
    exit 0 ;;
  gh)
    if [[ "${FAKE_GH:-}" == fail ]]; then
      echo "gh: Not Found (HTTP 404)" >&2
      exit 1
    fi
    echo "${FAKE_GH:-}"
    exit 0 ;;
  curl)
    [[ -n "${FAKE_CURL_FILE:-}" ]] || { echo "curl: (6) Could not resolve host" >&2; exit 6; }
    while (($#)); do
      [[ "$1" == --output ]] && { cp "$FAKE_CURL_FILE" "$2"; exit 0; }
      shift
    done
    exit 2 ;;
  kustomize) cat "${FAKE_RENDERED:?}"; exit 0 ;;
  gke-gcloud-auth-plugin) exit 0 ;;
esac
exit 0
