"""Shared by the script tests: recording stand-ins for gcloud, kubectl, gh and curl, and a runner.

The stand-ins (stand-in.sh) write down how they were called and answer the few questions
the scripts ask (does this exist, with which condition, which bindings); gcloud keeps those
answers in a state directory, so a second run sees what the first created. They let the
tests check the scripts' own logic: order, convergence, what is never called. They say
nothing about whether Google Cloud or a cluster would accept the calls; the flag checks
against the installed gcloud and kubectl cover the command lines, not the behaviour.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

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
# What `gh api repos/OWNER/REPO` answers in the stand-in world.
REPOSITORY_ID = "812345678"
OWNER_ID = "91234567"

STAND_IN = Path(__file__).with_name("stand-in.sh")
STAND_IN_TOOLS = ("gcloud", "kubectl", "gh", "curl", "kustomize", "gke-gcloud-auth-plugin")
ARGOCD_SUMS = REPO_ROOT / "argocd" / "install" / "remote-resources.sha256"
# Environment the scripts read; the caller's own settings must not leak in.
SCRIPT_ENV_PREFIXES = (
    "GCP_",
    "GKE_",
    "GAR_",
    "GITHUB_",
    "WIF_",
    "DEPLOY_SA",
    "NODE_SA",
    "PRODUCTION_ADDRESS",
    "ARGOCD_INSTALL_MANIFEST",
    "RELEASE_WORKFLOW",
    "GITOPS_APP",
    "KUSTOMIZE",
    "GIT_CONFIG",
)

# gcloud verbs that change something in the project.
MUTATING_GCLOUD = frozenset(
    {
        "create",
        "create-auto",
        "create-oidc",
        "update",
        "update-oidc",
        "add-iam-policy-binding",
        "remove-iam-policy-binding",
        "undelete",
        "delete",
    }
)


def pinned_sha256(url_part: str = "manifests/install.yaml") -> str:
    """The sha256 argocd/install/remote-resources.sha256 records for the URL ending so."""
    for line in ARGOCD_SUMS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#") and line.split()[1].endswith(url_part):
            return line.split()[0]
    raise AssertionError(f"no sha256 for *{url_part} in {ARGOCD_SUMS}")


def upstream_install_manifest() -> Path | None:
    """A local copy of Argo CD v3.5.1's install.yaml, or None.

    $ARGOCD_INSTALL_MANIFEST first, then install/install.yaml in $ARGOCD_CRDS_DIR (CI fetches
    it there), then ../shared/argocd-crds/v3.5.1/install/install.yaml beside the checkout.
    """
    candidates = []
    if os.environ.get("ARGOCD_INSTALL_MANIFEST"):
        candidates.append(Path(os.environ["ARGOCD_INSTALL_MANIFEST"]))
    if os.environ.get("ARGOCD_CRDS_DIR"):
        candidates.append(Path(os.environ["ARGOCD_CRDS_DIR"]) / "install" / "install.yaml")
    candidates.append(
        REPO_ROOT.parent / "shared" / "argocd-crds" / "v3.5.1" / "install" / "install.yaml"
    )
    return next((path for path in candidates if path.is_file()), None)


def require_upstream_install_manifest() -> Path:
    """The local install.yaml copy, checked against the recorded sha256; skips without one."""
    path = upstream_install_manifest()
    if path is None:
        pytest.skip(
            "no local copy of Argo CD v3.5.1's install.yaml: set ARGOCD_INSTALL_MANIFEST (or "
            "ARGOCD_CRDS_DIR holding install/install.yaml, as scripts/fetch-argocd-crds.sh writes)"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == pinned_sha256(), f"{path} is not the pinned install.yaml (sha256 {digest})"
    return path


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

    def mutating(self) -> list[list[str]]:
        """The gcloud calls that change something."""
        return [call for call in self.gcloud() if MUTATING_GCLOUD.intersection(call)]

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
        """The script failed, said `message` on stderr, and changed nothing anywhere."""
        assert self.returncode != 0, f"exited 0, expected a refusal:\n{self.stdout}"
        assert message in self.stderr, f"{message!r} not in stderr:\n{self.stderr}"
        changed = self.mutating() + [c for c in self.kubectl() if "apply" in c or "delete" in c]
        assert changed == [], f"a refused run changed things:\n{self.render_calls()}"


@cache
def throwaway_private_key() -> str:
    """A PEM private key generated for this test run; the repository holds no key, fake or real."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed; it generates the tests' throwaway private key")
    done = subprocess.run(
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


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
    """Install tests/scripts/stand-in.sh into `directory` under each tool's name."""
    directory.mkdir(parents=True, exist_ok=True)
    for tool in STAND_IN_TOOLS:
        (directory / tool).unlink(missing_ok=True)
        (directory / tool).symlink_to(STAND_IN)
    return directory


def git(*args: str | Path, cwd: Path) -> str:
    """Run git in `cwd` with a fixed identity; its stdout."""
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def make_github_remote(directory: Path, *, repo_url: str | None = None) -> Path:
    """A bare repository standing in for the fork on GitHub: main holds this checkout's
    argocd/ and .github/workflows/, with every repoURL replaced by `repo_url` if given."""
    work = directory / "work"
    for sub in ("argocd", ".github/workflows"):
        shutil.copytree(REPO_ROOT / sub, work / sub)
    if repo_url is not None:
        for path in (work / "argocd").rglob("*.yaml"):
            text = path.read_text(encoding="utf-8")
            path.write_text(
                re.sub(r"https://github\.com/[^\s\"']+", repo_url, text), encoding="utf-8"
            )
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "fork", cwd=work)
    bare = directory / "remote.git"
    git("clone", "--quiet", "--bare", work, bare, cwd=directory)
    return bare


@dataclass
class World:
    """A Google Cloud project and a GitHub fork as the stand-ins see them.

    gcloud's answers come from `state` (tests/scripts/stand-in.sh), which the runs change, so
    a second run sees what the first created. git fetches of the fork's GitHub URL are sent
    to `remote` (a local bare repository) through git's url.<base>.insteadOf.
    """

    root: Path
    fakes: Path
    remote: Path
    env: dict[str, str]

    @property
    def state(self) -> Path:
        return self.root / "state"

    def run(self, script: Path, args: list[str], **extra_env: str) -> Run:
        log = self.root / "calls.log"
        log.with_name(log.name + ".failed").unlink(missing_ok=True)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(SCRIPT_ENV_PREFIXES)
        }
        env.update(self.env)
        env.update(extra_env)
        result, lines = run_with_stand_ins(script, args, self.fakes, log, env=env, timeout=120)
        calls = [line.split("\t") for line in lines]
        return Run(result.returncode, result.stdout, result.stderr, calls)


RENDERED_STAND_IN = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: argocd\n"


def make_world(directory: Path, *, remote: Path | None = None) -> World:
    """A fresh World in `directory`: nothing exists in the project yet."""
    directory.mkdir(parents=True, exist_ok=True)
    fakes = install_fakes(directory / "bin")
    (directory / "state").mkdir()
    if remote is None:
        remote = make_github_remote(directory / "github")
    rendered = directory / "rendered.yaml"
    rendered.write_text(RENDERED_STAND_IN, encoding="utf-8")
    env = {
        "FAKE_STATE_DIR": str(directory / "state"),
        "FAKE_GH": f"{REPOSITORY_ID} {OWNER_ID} {OWNER}/{REPO}",
        # The download is checked for real; kustomize, slow on a 2 MB manifest, is stood in
        # for here (tests/scripts/test_gke_argocd_install.py renders for real).
        "KUSTOMIZE": str(fakes / "kustomize"),
        "FAKE_RENDERED": str(rendered),
        # Keep the external-IP wait short if an answer were ever missing.
        "IP_WAIT_SECONDS": "0",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"url.{remote.as_uri()}.insteadOf",
        "GIT_CONFIG_VALUE_0": f"https://github.com/{OWNER}/{REPO}.git",
    }
    manifest = upstream_install_manifest()
    if manifest is not None:
        env["FAKE_CURL_FILE"] = str(manifest)
    return World(directory, fakes, remote, env)


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
