# Shared by scripts/gke-bootstrap.sh and scripts/gke-teardown.sh (sourced, not run): the
# names of everything they create, read from options or the environment, and the functions
# that either run a command or, with --dry-run, print it as a line of the plan.
# The variables set here are read by the scripts that source this file.
# shellcheck shell=bash disable=SC2034

PROJECT_ID="${GCP_PROJECT_ID:-}"
REGION="${GCP_REGION:-europe-west1}"
CLUSTER="${GKE_CLUSTER:-iris}"
REGISTRY="${GAR_REPOSITORY:-iris}"
GH_OWNER="${GITHUB_OWNER:-}"
GH_REPO="${GITHUB_REPO:-iris-gitops}"
POOL="${WIF_POOL:-github}"
PROVIDER="${WIF_PROVIDER_ID:-github-actions}"
SA_NAME="${DEPLOY_SA_NAME:-iris-release}"
DRY_RUN=0

readonly COMMON_OPTIONS_HELP='Options (each also read from the environment variable in brackets):
  --project ID          Google Cloud project id                     [GCP_PROJECT_ID]
  --region REGION       region of the cluster and registry           [GCP_REGION, europe-west1]
  --cluster NAME        GKE cluster name                              [GKE_CLUSTER, iris]
  --registry NAME       Artifact Registry repository                  [GAR_REPOSITORY, iris]
  --github-owner OWNER  GitHub user or organisation of the fork       [GITHUB_OWNER]
  --github-repo REPO    GitHub repository name                        [GITHUB_REPO, iris-gitops]
  --dry-run             print the commands that would run; call nothing
  -h, --help            this text

Further names (environment only): WIF_POOL [github], WIF_PROVIDER_ID [github-actions],
DEPLOY_SA_NAME [iris-release].'

die() { echo "${0##*/}: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

# Each script defines own_option, which sets what one of its own flags means and returns 1
# for an option it does not know, and sets OWN_OPTIONS_HELP, printed after the shared help.
OWN_OPTIONS_HELP=""

usage() {
  printf 'Usage: scripts/%s [options]\n\n%s\n\n%s\n' "${0##*/}" "$COMMON_OPTIONS_HELP" "$OWN_OPTIONS_HELP"
}

# Reads the whole command line, then checks the names and derives the ones built from them.
parse_options() {
  while (($#)); do
    case "$1" in
      --project) PROJECT_ID="${2:?--project needs a value}"; shift 2 ;;
      --region) REGION="${2:?--region needs a value}"; shift 2 ;;
      --cluster) CLUSTER="${2:?--cluster needs a value}"; shift 2 ;;
      --registry) REGISTRY="${2:?--registry needs a value}"; shift 2 ;;
      --github-owner) GH_OWNER="${2:?--github-owner needs a value}"; shift 2 ;;
      --github-repo) GH_REPO="${2:?--github-repo needs a value}"; shift 2 ;;
      --dry-run) DRY_RUN=1; shift ;;
      -h | --help) usage; exit 0 ;;
      *)
        own_option "$1" || { usage >&2; die "unknown option: $1"; }
        shift
        ;;
    esac
  done
  derive_names
}

# Checks the names and derives the ones built from them.
derive_names() {
  [[ -n "$PROJECT_ID" ]] || die "set --project (or GCP_PROJECT_ID) to your Google Cloud project id"
  [[ "$PROJECT_ID" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] || die "'$PROJECT_ID' is not a Google Cloud project id"
  [[ -n "$GH_OWNER" ]] || die "set --github-owner (or GITHUB_OWNER) to the owner of your fork"
  # The provider condition compares these strings exactly, so refuse anything that could
  # not be a GitHub name rather than create a condition that never matches.
  [[ "$GH_OWNER" =~ ^[A-Za-z0-9][A-Za-z0-9-]*$ ]] || die "GitHub owner '$GH_OWNER' is not a valid GitHub name"
  [[ "$GH_REPO" =~ ^[A-Za-z0-9._-]+$ ]] || die "GitHub repository '$GH_REPO' is not a valid repository name"
  GH_REPOSITORY="${GH_OWNER}/${GH_REPO}"
  SA_EMAIL="${SA_NAME}@${PROJECT_ID}.iam.gserviceaccount.com"
  # The context name `get-credentials` writes; every kubectl call names it, so neither
  # script acts on whatever cluster happens to be current.
  KUBE_CONTEXT="gke_${PROJECT_ID}_${REGION}_${CLUSTER}"
  KUBECTL=(kubectl --context="$KUBE_CONTEXT")
}

# Prints words so the line can be pasted into a shell: plain words stay bare, others are
# single-quoted.
quote() {
  local out="" word
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
      out+="${word} "
    else
      out+="'${word//\'/\'\\\'\'}' "
    fi
  done
  printf '%s' "${out% }"
}

# Runs a command, or in dry-run mode prints it.
run() {
  if ((DRY_RUN)); then
    quote "$@"
    echo
  else
    "$@"
  fi
}

section() {
  if ((DRY_RUN)); then echo "# $*"; else log "$*"; fi
}

# Splits "A... -- B..." into the arrays FIRST and SECOND.
FIRST=()
SECOND=()
split_at_dashdash() {
  FIRST=()
  SECOND=()
  while (($#)) && [[ "$1" != "--" ]]; do FIRST+=("$1"); shift; done
  (($#)) || die "internal: missing -- in a plan step"
  shift
  SECOND=("$@")
}
