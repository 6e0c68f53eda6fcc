"""The GitOps tool and the release bump script run on real repositories (harness.git)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from tests.tools import kustomize_command

REPO_ROOT = Path(__file__).resolve().parents[2]
BUMP_SCRIPT = REPO_ROOT / "scripts" / "release" / "bump-staging.sh"
HOST = "europe-west1-docker.pkg.dev/iris-demo-123/iris/iris-api"


def ref(n: int) -> str:
    """A distinct, valid image reference per number, like the ones a release pushes."""
    digest = hashlib.sha256(f"image {n}".encode()).hexdigest()
    commit = hashlib.sha1(f"commit {n}".encode(), usedforsecurity=False).hexdigest()[:7]
    return f"{HOST}:sha-{commit}@sha256:{digest}"


def overlay(repo: Path, env: str) -> Path:
    return repo / "deploy" / "overlays" / env / "kustomization.yaml"


def app_file(repo: Path, env: str) -> Path:
    return repo / "argocd" / "apps" / f"{env}.yaml"


def pin_of(repo: Path, env: str) -> str:
    """The targetRevision of `env`'s Application in the working tree."""
    doc = yaml.safe_load(app_file(repo, env).read_text(encoding="utf-8"))
    return str(doc["spec"]["source"]["targetRevision"])


def set_pin(repo: Path, env: str, sha: str) -> None:
    """Pin an Application by hand, as a person editing the file would."""
    path = app_file(repo, env)
    text = path.read_text(encoding="utf-8")
    old = f"targetRevision: {pin_of(repo, env)}"
    assert text.count(old) == 1
    path.write_text(text.replace(old, f"targetRevision: {sha}"), encoding="utf-8")


def release_file(repo: Path) -> Path:
    """The file that holds the image every environment runs."""
    return repo / "deploy" / "release" / "kustomization.yaml"


def record_file(repo: Path) -> Path:
    return repo / "deploy" / "release" / "release.yaml"


def rendered(repo: Path, env: str) -> str:
    """What Argo CD applies for `env` with `repo` as main: the working tree for an environment
    that follows main, the pinned commit's deploy/ for a pinned one."""
    pin = pin_of(repo, env) if app_file(repo, env).exists() else "main"
    with tempfile.TemporaryDirectory() as scratch:
        root = repo
        if re.fullmatch(r"[0-9a-f]{40}", pin):
            archive = subprocess.run(
                ["git", "archive", pin, "deploy"], cwd=repo, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, check=True)
            root = Path(scratch)
        proc = subprocess.run(
            [*kustomize_command(), str(root / "deploy" / "overlays" / env)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def deployed_image(repo: Path, env: str) -> str:
    """The image the rendered Deployment of `env` runs, straight from kustomize."""
    docs = yaml.safe_load_all(rendered(repo, env))
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


def gitops(repo: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`python -m gitops` as the workflows run it, from the repository's root."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "gitops", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def bump_env(**extra: str) -> dict[str, str]:
    """The release job's environment: the venv's Python, no sleeping between retries."""
    return {**os.environ, "PYTHON": sys.executable, "GITOPS_RETRY_DELAY": "0", **extra}


def bump(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the release job's bump script in `repo`, exactly as the workflow does."""
    return subprocess.run(
        [str(BUMP_SCRIPT), *args],
        cwd=repo,
        env=bump_env(**env),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def start_bump(repo: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """The same, started in the background to race other bumps."""
    return subprocess.Popen(
        [str(BUMP_SCRIPT), *args],
        cwd=repo,
        env=bump_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
