"""The git working copy the tool edits: where overlays live, how to run git, and the lock."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gitops.errors import GitOpsError

OVERLAYS_DIR = Path("deploy/overlays")
KUSTOMIZATION = "kustomization.yaml"
LOCK_NAME = "gitops.lock"
_ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_GIT_TIMEOUT_S = 60


def _git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Plain, untranslated output so that what we parse does not depend on the user's locale;
    # no pager and no prompts, so a missing credential fails instead of hanging a job.
    env = dict(os.environ)
    env.update({"LC_ALL": "C", "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0"})
    env.update(extra or {})
    return env


def run_git_bytes(
    cwd: Path,
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """Run git in `cwd` and return its raw stdout; a failure becomes a GitOpsError.

    `env` adds variables for this one process (credentials for a fetch or a push).
    """
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=stdin,
            capture_output=True,
            env=_git_env(env),
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitOpsError("git is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitOpsError(f"git {' '.join(args)} did not finish in {_GIT_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        raise GitOpsError(f"git {args[0]} failed: {detail}")
    return proc.stdout


def run_git(cwd: Path, args: Sequence[str], *, stdin: str | None = None) -> str:
    """Run git in `cwd` and return its stdout as text (git's words on failure)."""
    data = None if stdin is None else stdin.encode("utf-8")
    return run_git_bytes(cwd, args, stdin=data).decode("utf-8", "replace")


@dataclass(frozen=True)
class Repo:
    """A git working tree holding `deploy/overlays/<env>/kustomization.yaml` files."""

    root: Path
    git_dir: Path

    @classmethod
    def open(cls, path: Path) -> Repo:
        """Find the working tree that contains `path`, or raise GitOpsError if there is none."""
        if not path.is_dir():
            raise GitOpsError(f"{path} is not a directory")
        try:
            out = run_git(path, ["rev-parse", "--show-toplevel", "--git-common-dir"])
        except GitOpsError as exc:
            raise GitOpsError(
                f"{path.resolve()} is not inside a git repository (run the tool from a clone)"
            ) from exc
        lines = out.splitlines()
        if len(lines) != 2 or not lines[0]:
            raise GitOpsError(f"{path.resolve()} is not inside a git working tree")
        root = Path(lines[0])
        git_dir = Path(lines[1])
        if not git_dir.is_absolute():
            git_dir = (path / git_dir).resolve()
        return cls(root=root, git_dir=git_dir)

    def git(self, *args: str, stdin: str | None = None) -> str:
        """Run a git command at the root of the working tree."""
        return run_git(self.root, args, stdin=stdin)

    def git_bytes(self, *args: str, stdin: bytes | None = None) -> bytes:
        """Run a git command at the root of the working tree, without decoding its output."""
        return run_git_bytes(self.root, args, stdin=stdin)

    def git_env(self, env: Mapping[str, str], *args: str) -> str:
        """Run a git command with `env` added to its environment only."""
        return run_git_bytes(self.root, args, env=env).decode("utf-8", "replace")

    def environments(self) -> list[str]:
        """The environments, one per overlay directory that holds a kustomization.yaml."""
        overlays = self.root / OVERLAYS_DIR
        if not overlays.is_dir():
            return []
        return sorted(
            entry.name
            for entry in overlays.iterdir()
            if (entry / KUSTOMIZATION).is_file() and _ENV_NAME.match(entry.name)
        )

    def overlay_dir(self, env: str) -> Path:
        """The overlay directory of `env`; GitOpsError names the known ones if it does not exist."""
        known = self.environments()
        if env not in known:
            listed = ", ".join(known) if known else f"none: {OVERLAYS_DIR}/ has no overlays"
            raise GitOpsError(f"unknown environment {env!r} (known: {listed})")
        return self.root / OVERLAYS_DIR / env

    def kustomization_path(self, env: str) -> Path:
        """The overlay file that holds the image of `env`."""
        return self.overlay_dir(env) / KUSTOMIZATION

    def relative(self, path: Path) -> str:
        """`path` relative to the root, with forward slashes, as git names it."""
        return path.relative_to(self.root).as_posix()

    @contextmanager
    def lock(self, timeout_s: float, *, name: str = LOCK_NAME) -> Iterator[None]:
        """Hold an exclusive lock for edits to this clone, waiting up to `timeout_s` seconds.

        The lock file lives in the git directory shared by all worktrees of the clone, so it is
        never committed and two runs on the same clone cannot interleave their edits. `name`
        picks a separate lock for work that itself takes the edit lock (the write-back).
        """
        path = self.git_dir / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise GitOpsError(
                            f"another gitops run holds {path} for more than {timeout_s:g} s; "
                            "retry when it has finished"
                        ) from exc
                    time.sleep(0.05)
            yield
        finally:
            # Closing the descriptor releases the lock even if the body raised.
            os.close(fd)
