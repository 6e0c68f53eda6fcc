"""The environments in promotion order, and the commit each later one is pinned to.

The first environment follows the tip of main; every later one runs the commit its Argo CD
Application pins in `spec.source.targetRevision`. A promotion moves the pin of the next
environment to a commit the previous one ran healthy, and nothing else ever moves it.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.error import YAMLError

from gitops import invocation
from gitops.errors import GitOpsError
from gitops.files import atomic_write
from gitops.kustomization import argocd_yaml, keep_style
from gitops.repo import OVERLAYS_DIR, Repo

PROMOTION_ORDER: tuple[str, ...] = ("staging", "production")
"""The one place the order is declared: a change runs in each environment before the next."""

APPS_DIR = Path("argocd/apps")
_SHA = re.compile(r"^[0-9a-f]{40}$")


def follows_main(env: str) -> bool:
    """True for the first environment, which Argo CD syncs from the tip of main."""
    return env == PROMOTION_ORDER[0]


def _position(env: str, known: list[str]) -> int:
    if env not in PROMOTION_ORDER:
        listed = ", ".join(known) or "none"
        raise GitOpsError(f"unknown environment {env!r} (known: {listed})")
    return PROMOTION_ORDER.index(env)


def check_direction(source: str, target: str, known: list[str]) -> None:
    """Refuse anything but a promotion from one environment to the next in PROMOTION_ORDER."""
    if source == target:
        raise GitOpsError(f"cannot promote {source!r} to itself")
    order = " -> ".join(PROMOTION_ORDER)
    src, dst = _position(source, known), _position(target, known)
    if dst < src:
        raise GitOpsError(
            f"{source} comes after {target} (promotion order: {order}); promotion never goes "
            f"backwards. To undo a promotion, revert it: `{invocation()} history {source}` "
            "prints the git revert command"
        )
    if dst != src + 1:
        raise GitOpsError(
            f"{target} takes only what {PROMOTION_ORDER[dst - 1]} ran (promotion order: "
            f"{order}); promote {PROMOTION_ORDER[dst - 1]} to {target}"
        )


def application_path(env: str) -> Path:
    """The Argo CD Application of `env`, relative to the repository root."""
    return APPS_DIR / f"{env}.yaml"


def _source(doc: Any, env: str, label: str) -> Any:
    overlay = (OVERLAYS_DIR / env).as_posix()
    if not isinstance(doc, dict) or doc.get("kind") != "Application":
        raise GitOpsError(f"{label}: not an Argo CD Application")
    source = (doc.get("spec") or {}).get("source")
    if not isinstance(source, dict) or source.get("path") != overlay:
        raise GitOpsError(f"{label}: spec.source.path is not {overlay}")
    return source


def parse_pin(text: str, env: str, *, label: str) -> str:
    """The targetRevision of `env`'s Application in `text` (a branch or a commit)."""
    try:
        doc = argocd_yaml().load(text)
    except YAMLError as exc:
        raise GitOpsError(f"{label}: malformed YAML: {exc}") from exc
    value = _source(doc, env, label).get("targetRevision")
    if not value:
        raise GitOpsError(f"{label}: spec.source.targetRevision is not set")
    return str(value)


@dataclass(frozen=True)
class Pin:
    """Where a pinned environment's Application points, as read from the working tree."""

    env: str
    path: str
    revision: str


def read_pin(repo: Repo, env: str) -> Pin:
    """The commit `env` is pinned to; GitOpsError unless it is a full commit id."""
    path = application_path(env)
    label = path.as_posix()
    try:
        text = (repo.root / path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise GitOpsError(f"{label} does not exist; {env} has no Argo CD Application") from exc
    revision = parse_pin(text, env, label=label)
    if not _SHA.match(revision):
        raise GitOpsError(
            f"{label}: targetRevision is {revision!r}; {env} must be pinned to a full commit "
            f"id, or changes would reach it without a promotion"
        )
    return Pin(env, label, revision)


def pin_text(text: str, env: str, sha: str, *, label: str) -> str:
    """`text` with `env`'s Application pinned to `sha`, every other byte kept."""
    yaml = argocd_yaml()
    try:
        doc = yaml.load(text)
    except YAMLError as exc:
        raise GitOpsError(f"{label}: malformed YAML: {exc}") from exc
    source = _source(doc, env, label)
    source["targetRevision"] = keep_style(source.get("targetRevision"), sha)
    out = io.StringIO()
    yaml.explicit_start = text.lstrip().startswith("---")
    yaml.dump(doc, out)
    return out.getvalue()


def write_pin(repo: Repo, env: str, sha: str) -> bool:
    """Pin `env` to `sha` in the working tree; False when it already was."""
    path = repo.root / application_path(env)
    text = path.read_text(encoding="utf-8")
    new = pin_text(text, env, sha, label=application_path(env).as_posix())
    if new == text:
        return False
    atomic_write(path, new.encode("utf-8"))
    return True
