"""Shared by the script tests: recording stand-ins for gcloud and kubectl, and a runner.

The stand-ins only write down how they were called and answer the few questions the
scripts ask (does this exist, what is the project number). They let the tests check the
scripts' own logic: order, idempotency, what is never called. They say nothing about
whether Google Cloud or a cluster would accept the calls; the flag checks against the
installed gcloud and kubectl cover the command lines, not the behaviour.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO_ROOT / "scripts" / "gke-bootstrap.sh"
TEARDOWN = REPO_ROOT / "scripts" / "gke-teardown.sh"

PROJECT = "iris-demo-123"
PROJECT_NUMBER = "123456789012"
EXTERNAL_IP = "203.0.113.7"  # TEST-NET-3: documentation addresses, never routed


def repository_of_argocd() -> tuple[str, str]:
    """The GitHub owner and repository that argocd/root.yaml deploys from."""
    text = (REPO_ROOT / "argocd" / "root.yaml").read_text(encoding="utf-8")
    match = re.search(
        r"repoURL:\s*[\"']?https://github\.com/([^/\s]+)/([^/\s\"']+?)(?:\.git)?[\"']?\s*$",
        text,
        re.M,
    )
    assert match, "argocd/root.yaml has no https://github.com/<owner>/<repo> repoURL"
    return match.group(1), match.group(2)


# The repository argocd/ deploys from: the one real runs must be given (they refuse another).
OWNER, REPO = repository_of_argocd()
ARGS = ["--project", PROJECT, "--github-owner", OWNER, "--github-repo", REPO]

# The same recorder for every tool; the answers depend on FAKE_STATE:
#   fresh         nothing exists yet (describe fails, no IAM bindings)
#   exists        everything exists and is active
#   soft-deleted  like exists, but the Workload Identity pool and provider are DELETED
_FAKE = r"""#!/usr/bin/env bash
# Recording stand-in for __TOOL__ (tests only).
{ printf '%s' '__TOOL__'; printf '\t%s' "$@"; printf '\n'; } >>"$FAKE_LOG"
args=" $* "
state="${FAKE_STATE:-fresh}"
# FAKE_FAIL_FIRST=<words>: the first call containing them fails, as IAM refuses a binding
# for a service account it does not see yet.
if [[ -n "${FAKE_FAIL_FIRST:-}" && "$args" == *"$FAKE_FAIL_FIRST"* ]] &&
  [[ ! -e "$FAKE_LOG.failed" ]]; then
  touch "$FAKE_LOG.failed"
  echo "ERROR: (gcloud) INVALID_ARGUMENT: Service account does not exist." >&2
  exit 1
fi
case '__TOOL__' in
  gcloud)
    case "$args" in
      *" projects describe "*) echo "__PROJECT_NUMBER__"; exit 0 ;;
      *" get-iam-policy "*) [[ "$state" == fresh ]] || echo "member"; exit 0 ;;
      *" describe "*)
        [[ "$state" == fresh ]] && { echo "ERROR: (gcloud) NOT_FOUND" >&2; exit 1; }
        if [[ "$args" == *"--format=value(state)"* ]]; then
          if [[ "$state" == soft-deleted && "$args" == *" workload-identity-pools "* ]]; then
            echo DELETED
          else
            echo ACTIVE
          fi
        fi
        exit 0 ;;
    esac ;;
  kubectl)
    case "$args" in
      *" get namespace "*) [[ "$state" == fresh ]] && exit 1; exit 0 ;;
      *" get service "*) printf '%s' "__EXTERNAL_IP__"; exit 0 ;;
    esac ;;
esac
exit 0
"""

# gcloud verbs that change something in the project.
MUTATING_GCLOUD = frozenset(
    {
        "create",
        "create-auto",
        "create-oidc",
        "add-iam-policy-binding",
        "remove-iam-policy-binding",
        "undelete",
        "delete",
    }
)


@dataclass(frozen=True)
class Run:
    """One run of a script against the stand-ins."""

    returncode: int
    stdout: str
    stderr: str
    calls: list[list[str]]

    def gcloud(self) -> list[list[str]]:
        """The gcloud calls, each without the leading 'gcloud'."""
        return [call[1:] for call in self.calls if call[0] == "gcloud"]

    def kubectl(self) -> list[list[str]]:
        """The kubectl calls, each without the leading 'kubectl'."""
        return [call[1:] for call in self.calls if call[0] == "kubectl"]

    def index(self, *words: str) -> int:
        """Position of the first call containing all `words` (as whole arguments)."""
        for position, call in enumerate(self.calls):
            if all(word in call for word in words):
                return position
        raise AssertionError(f"no call with {words}; calls were:\n{self.render_calls()}")

    def render_calls(self) -> str:
        return "\n".join(" ".join(call) for call in self.calls)

    def assert_in_order(self, *steps: tuple[str, ...]) -> None:
        """The first call of each step (words as for `index`) comes in the order given."""
        positions = [self.index(*words) for words in steps]
        assert positions == sorted(positions), f"{steps} out of order:\n{self.render_calls()}"

    def assert_refused(self, message: str) -> None:
        """The script failed, said `message` on stderr, and called no tool at all."""
        assert self.returncode != 0, f"exited 0, expected a refusal:\n{self.stdout}"
        assert message in self.stderr, f"{message!r} not in stderr:\n{self.stderr}"
        assert self.calls == [], f"a refused run called tools:\n{self.render_calls()}"


def write_stand_in(directory: Path, tool: str, script: str) -> None:
    """Write `script` as the executable `directory/tool`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / tool
    path.write_text(script, encoding="utf-8")
    path.chmod(0o755)


def run_with_stand_ins(
    script: Path,
    args: list[str],
    stand_ins: Path,
    log: Path,
    *,
    env: dict[str, str],
    timeout: float,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run `bash script args` with `stand_ins` first on PATH; stdin is not a terminal.

    `env` is the environment apart from PATH and FAKE_LOG: the stand-ins append a line per
    call to FAKE_LOG (`log`, emptied first), and those lines are returned with the result.
    """
    log.unlink(missing_ok=True)
    log.touch()
    result = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        env={**env, "PATH": f"{stand_ins}{os.pathsep}{os.environ['PATH']}", "FAKE_LOG": str(log)},
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    return result, log.read_text(encoding="utf-8").splitlines()


def install_fakes(directory: Path) -> Path:
    """Write gcloud, kubectl and gke-gcloud-auth-plugin stand-ins into `directory`."""
    for tool in ("gcloud", "kubectl", "gke-gcloud-auth-plugin"):
        text = (
            _FAKE.replace("__TOOL__", tool)
            .replace("__PROJECT_NUMBER__", PROJECT_NUMBER)
            .replace("__EXTERNAL_IP__", EXTERNAL_IP)
        )
        write_stand_in(directory, tool, text)
    return directory


def run_script(
    script: Path,
    args: list[str],
    fakes: Path,
    *,
    state: str = "fresh",
    extra_env: dict[str, str] | None = None,
) -> Run:
    """Run `script` with the gcloud and kubectl stand-ins first on PATH."""
    log = fakes / f"calls-{state}.log"
    log.with_name(log.name + ".failed").unlink(missing_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        # The scripts read these; the caller's own settings must not leak in.
        if not key.startswith(("GCP_", "GKE_", "GAR_", "GITHUB_", "WIF_", "DEPLOY_SA"))
    }
    env.update(
        FAKE_STATE=state,
        # Keep the external-IP wait short if an answer were ever missing.
        IP_WAIT_SECONDS="0",
        **(extra_env or {}),
    )
    result, lines = run_with_stand_ins(script, args, fakes, log, env=env, timeout=60)
    calls = [line.split("\t") for line in lines]
    return Run(result.returncode, result.stdout, result.stderr, calls)


# --- the installed gcloud's own command tree --------------------------------------------------


@cache
def gcloud_tree() -> dict[str, Any] | None:
    """gcloud's static completion tree (every command and flag), or None without gcloud.

    It ships with the SDK as data/cli/gcloud_completions.py: one dict literal, written in
    the subset of Python that is also JSON (which parses ten times faster than Python).
    """
    found = shutil.which("gcloud")
    if found is None:
        return None
    sdk_root = Path(found).resolve().parent.parent
    tree_file = sdk_root / "data" / "cli" / "gcloud_completions.py"
    if not tree_file.exists():
        return None
    text = tree_file.read_text(encoding="utf-8")
    literal = text[text.index("{") :]
    try:
        tree = json.loads(literal)
    except json.JSONDecodeError:
        tree = ast.literal_eval(literal)
    assert isinstance(tree, dict)
    return tree


def unknown_gcloud_flags(tree: dict[str, Any], argv: list[str]) -> list[str]:
    """Problems with one gcloud command line: an unknown command or flag."""
    node = tree
    position = 0
    while position < len(argv) and argv[position] in node.get("commands", {}):
        node = node["commands"][argv[position]]
        position += 1
    if node.get("commands"):
        return [f"'gcloud {' '.join(argv[: position + 1])}' is not a gcloud command"]
    known = set(node.get("flags", {})) | set(tree.get("flags", {}))
    problems = []
    for arg in argv[position:]:
        if arg.startswith("--"):
            flag = arg.split("=", 1)[0]
            if flag not in known:
                problems.append(f"gcloud {' '.join(argv[:position])}: unknown flag {flag}")
    return problems
