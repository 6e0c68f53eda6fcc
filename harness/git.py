"""Real git repositories in temporary directories, holding a copy of the project's deploy/.

git runs without this machine's user or system configuration and with a fixed identity,
so what a developer's config says (signing, hooks, default branch) changes nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Developer",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Test Developer",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}
ISOLATION = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git_env() -> dict[str, str]:
    """This process's environment, with the identity and without the machine's git config."""
    return {**os.environ, **IDENTITY, **ISOLATION}


class GitError(RuntimeError):
    """A git command failed; the message holds the command and git's stderr."""


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd`; its stdout, stripped. Raises GitError with git's stderr."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=git_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def init_repo(path: Path) -> Path:
    """A new repository on branch main holding the project's deploy/ and argocd/apps/.

    The first commit holds deploy/; the Applications arrive in the second, production pinned
    to the first (the project pins it to a commit whose release is the placeholder).
    """
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    shutil.copytree(REPO_ROOT / "deploy", path / "deploy")
    git(path, "add", "deploy")
    git(path, "commit", "-q", "-m", "Add the deploy manifests")
    shutil.copytree(REPO_ROOT / "argocd", path / "argocd")
    production = path / "argocd" / "apps" / "production.yaml"
    pinned, count = re.subn(
        r"(?m)^(\s*targetRevision: )[0-9a-f]{40}$",
        rf"\g<1>{git(path, 'rev-parse', 'HEAD')}",
        production.read_text(encoding="utf-8"),
    )
    if count != 1:
        raise GitError(f"{production} does not pin one commit")
    production.write_text(pinned, encoding="utf-8")
    git(path, "add", "argocd")
    git(path, "commit", "-q", "-m", "Add the Argo CD Applications, production pinned")
    return path


def init_origin(workdir: Path) -> Path:
    """A bare `origin.git` in `workdir` seeded with the project's deploy/ on main."""
    origin = workdir / "origin.git"
    git(workdir, "init", "-q", "--bare", "-b", "main", str(origin))
    seed = init_repo(workdir / "seed")
    git(seed, "push", "-q", str(origin), "main")
    return origin


def clone(origin: Path, path: Path) -> Path:
    """A working clone of `origin` at `path`."""
    git(origin.parent, "clone", "-q", str(origin), str(path))
    return path
