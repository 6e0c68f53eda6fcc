"""Holds: a file in an overlay that stops releases from moving that environment.

After a rollback, the next release would otherwise re-deploy the very code that was rolled
back. `hold` writes `deploy/overlays/<env>/HOLD` (kustomize ignores files a kustomization does
not name, so the rendered manifests do not change); `bump` refuses a held environment, and
`release` removes the file. The hold travels with the overlay through Git and review, like
every other change to what runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gitops import invocation
from gitops.errors import GitOpsError
from gitops.files import atomic_write
from gitops.repo import Repo

HOLD_FILE = "HOLD"
_KEY = re.compile(r"^([a-z-]+):[ \t]*(.*)$")
_MAX_REASON = 200


class HoldError(GitOpsError):
    """The environment is on hold; the release must not move it (exit code 3)."""

    exit_code = 3


@dataclass(frozen=True)
class Hold:
    """Why an environment is held, and the image it was running when the hold was placed."""

    reason: str
    image: str

    def render(self, env: str) -> str:
        return (
            f"# {env} is on hold: releases do not change its image while this file exists.\n"
            f"# Lift it with: python -m gitops release {env}\n"
            f"reason: {self.reason}\n"
            f"image: {self.image}\n"
        )


def hold_path(repo: Repo, env: str) -> str:
    """The hold file of `env`, relative to the repository root."""
    return repo.relative(repo.overlay_dir(env) / HOLD_FILE)


def read_hold(repo: Repo, env: str) -> Hold | None:
    """The hold on `env`, or None; a hold file that cannot be read still counts as a hold."""
    path = repo.overlay_dir(env) / HOLD_FILE
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        # Fail closed: someone meant to stop releases, even if the file is damaged.
        return Hold(reason="(unreadable hold file)", image="-")
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _KEY.match(line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return Hold(reason=values.get("reason") or "(no reason given)", image=values.get("image", "-"))


def refuse_if_held(repo: Repo, env: str) -> None:
    """Raise HoldError naming the reason when `env` is on hold."""
    hold = read_hold(repo, env)
    if hold is not None:
        raise HoldError(
            f"{env} is on hold ({hold.reason}; held at {hold.image}); nothing was changed. "
            f"Lift it with '{invocation()} release {env}' once the fix is on main"
        )


def place_hold(repo: Repo, env: str, reason: str, image: str) -> tuple[str, bool]:
    """Write the hold file; returns its path and whether it changed."""
    reason = " ".join(reason.split())
    if not reason:
        raise GitOpsError("--reason must say why the environment is held")
    if len(reason) > _MAX_REASON:
        raise GitOpsError(f"--reason is {len(reason)} characters; keep it under {_MAX_REASON}")
    path = repo.overlay_dir(env) / HOLD_FILE
    text = Hold(reason=reason, image=image).render(env)
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old != text:
        atomic_write(path, text.encode("utf-8"))
    return repo.relative(path), old != text


def lift_hold(repo: Repo, env: str) -> str | None:
    """Remove the hold file; returns its path, or None when there was no hold."""
    path = repo.overlay_dir(env) / HOLD_FILE
    if not path.exists():
        return None
    path.unlink()
    return repo.relative(path)
