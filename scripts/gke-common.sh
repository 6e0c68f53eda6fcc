# Shared by scripts/gke-bootstrap.sh and scripts/gke-teardown.sh (sourced, not run): the
# names of everything they create, read from options or the environment, the limits Google
# Cloud puts on them, and the functions that either run a command or, with --dry-run, print
# it as a line of the plan.
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
NODE_SA_NAME="${NODE_SA_NAME:-iris-nodes}"
# The regional static IP the production LoadBalancer Service asks for by this name
# (deploy/overlays/production/service.patch.yaml).
ADDRESS_NAME="${PRODUCTION_ADDRESS:-iris-production}"
# The Cloud Monitoring dashboard made from monitoring/dashboard.json, found by this name.
readonly DASHBOARD_DISPLAY_NAME="Iris API"
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
DEPLOY_SA_NAME [iris-release], NODE_SA_NAME [iris-nodes], PRODUCTION_ADDRESS [iris-production].'

die() { echo "${0##*/}: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

# Each script defines own_option NAME VALUE, which sets what one of its own flags means and
# sets OWN_SHIFT to the number of words it used (1, or 2 for a flag with a value), or returns
# 1 for an option it does not know; and sets OWN_OPTIONS_HELP, printed after the shared help.
OWN_OPTIONS_HELP=""
OWN_SHIFT=1

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
        OWN_SHIFT=1
        own_option "$1" "${2-}" || { usage >&2; die "unknown option: $1"; }
        (($# >= OWN_SHIFT)) || die "$1 needs a value"
        shift "$OWN_SHIFT"
        ;;
    esac
  done
  derive_names
}

# `check_name WHAT VALUE REGEX MIN MAX WHY` refuses VALUE unless it matches REGEX and its
# length is within MIN..MAX. Google Cloud would refuse it too, but only after the resources
# before it were created, and again on every re-run.
check_name() {
  local what="$1" value="$2" regex="$3" min="$4" max="$5" why="$6"
  if [[ ! "$value" =~ $regex ]] || ((${#value} < min || ${#value} > max)); then
    die "${what} '${value}' is not valid: ${why}"
  fi
}

# `check_length WHAT VALUE MAX`: for free text (display names, descriptions).
check_length() {
  ((${#2} <= $3)) || die "internal: the ${1} '${2}' is ${#2} characters, over the limit of ${3}"
}

# `check_app_credentials ID INSTALLATION_ID KEY_FILE`: the GitHub App for Argo CD
# Notifications, all three or none. The key file is checked for its PEM header only; neither
# it nor any line of it is ever printed.
check_app_credentials() {
  local id="$1" installation="$2" key="$3"
  [[ -z "$id$installation$key" ]] && return 0
  [[ -n "$id" && -n "$installation" && -n "$key" ]] ||
    die "give --github-app-id, --github-app-installation-id and --github-app-key together, or none of them"
  [[ "$id" =~ ^[1-9][0-9]{0,19}$ ]] || die "the GitHub App ID is a number (the App's settings page); '$id' is not one"
  [[ "$installation" =~ ^[1-9][0-9]{0,19}$ ]] ||
    die "the installation id is a number (the end of the installation's settings URL); '$installation' is not one"
  [[ -f "$key" && -r "$key" ]] || die "cannot read the GitHub App key file ${key}"
  local header=""
  IFS= read -r header <"$key" || true
  header="${header%$'\r'}"
  [[ "$header" =~ ^-----BEGIN\ (RSA\ )?PRIVATE\ KEY-----$ ]] ||
    die "${key} is not a PEM private key (download one from the GitHub App's settings: Private keys)"
}

# Checks the names and derives the ones built from them. The limits, with their sources:
derive_names() {
  [[ -n "$PROJECT_ID" ]] || die "set --project (or GCP_PROJECT_ID) to your Google Cloud project id"
  # Resource Manager, "Creating and managing projects": 6 to 30 characters, lowercase
  # letters, digits and hyphens, starting with a letter, not ending with a hyphen.
  check_name "Project id" "$PROJECT_ID" '^[a-z][a-z0-9-]*[a-z0-9]$' 6 30 \
    "6-30 lowercase letters, digits or hyphens, starting with a letter"
  [[ -n "$GH_OWNER" ]] || die "set --github-owner (or GITHUB_OWNER) to the owner of your fork"
  # GitHub: a user or organisation name has at most 39 characters, letters, digits and
  # hyphens, not starting with a hyphen; a repository name at most 100 of letters, digits,
  # '.', '-' and '_'. The provider condition compares these strings exactly, so refuse
  # anything that could not be a GitHub name rather than create a condition that never
  # matches.
  check_name "GitHub owner" "$GH_OWNER" '^[A-Za-z0-9][A-Za-z0-9-]*$' 1 39 \
    "at most 39 letters, digits or hyphens, not starting with a hyphen"
  check_name "GitHub repository" "$GH_REPO" '^[A-Za-z0-9._-]+$' 1 100 \
    "at most 100 letters, digits, '.', '-' or '_'"
  [[ "$GH_REPO" != "." && "$GH_REPO" != ".." ]] || die "GitHub repository '$GH_REPO' is not valid"
  # Compute Engine region names: europe-west1, us-central1, ...
  check_name "Region" "$REGION" '^[a-z]+-[a-z]+[0-9]+$' 1 63 "a region such as europe-west1"
  # gcloud container clusters create --help (NAME): lowercase letters, digits and '-',
  # starting with a letter, ending with a letter or digit, at most 40 characters.
  check_name "Cluster name" "$CLUSTER" '^[a-z]([a-z0-9-]*[a-z0-9])?$' 1 40 \
    "at most 40 lowercase letters, digits or hyphens, starting with a letter"
  # Artifact Registry, "Create standard repositories": lowercase letters, digits and
  # hyphens, starting with a letter, ending with a letter or digit, at most 63 characters.
  check_name "Artifact Registry repository" "$REGISTRY" '^[a-z]([a-z0-9-]*[a-z0-9])?$' 1 63 \
    "at most 63 lowercase letters, digits or hyphens, starting with a letter"
  # gcloud iam workload-identity-pools create --help (and providers): 4-32 characters of
  # [a-z0-9-]; the prefix gcp- is reserved by Google.
  local id
  for id in "$POOL" "$PROVIDER"; do
    check_name "Workload Identity pool/provider id" "$id" '^[a-z0-9-]+$' 4 32 \
      "4-32 lowercase letters, digits or hyphens"
    [[ "$id" != gcp-* ]] || die "Workload Identity pool/provider id '$id' is not valid: the prefix gcp- is reserved"
  done
  # IAM CreateServiceAccountRequest.account_id: 6-30 characters matching
  # [a-z]([-a-z0-9]*[a-z0-9]) (RFC 1035).
  for id in "$SA_NAME" "$NODE_SA_NAME"; do
    check_name "Service account id" "$id" '^[a-z]([-a-z0-9]*[a-z0-9])?$' 6 30 \
      "6-30 lowercase letters, digits or hyphens, starting with a letter"
  done
  # Compute Engine resource names (RFC 1035): at most 63 characters.
  check_name "Address name" "$ADDRESS_NAME" '^[a-z]([-a-z0-9]*[a-z0-9])?$' 1 63 \
    "at most 63 lowercase letters, digits or hyphens, starting with a letter"

  GH_REPOSITORY="${GH_OWNER}/${GH_REPO}"
  SA_EMAIL="${SA_NAME}@${PROJECT_ID}.iam.gserviceaccount.com"
  NODE_SA_EMAIL="${NODE_SA_NAME}@${PROJECT_ID}.iam.gserviceaccount.com"
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
