"""Point every Argo CD manifest at a different Git repository in one step (for forks)."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.error import YAMLError

from gitops.errors import GitOpsError
from gitops.files import atomic_write
from gitops.kustomization import argocd_yaml, keep_style
from gitops.repo import Repo

ARGOCD_DIR = Path("argocd")
# Any URL Argo CD can clone: https/http, ssh, the git protocol (in-cluster git daemons used by
# local test clusters), or the scp-like git@host:path form.
_URL = re.compile(
    r"^(?:(?:https?|git)://[A-Za-z0-9.-]+(?::[0-9]+)?/[^\s?#'\"]+"
    r"|ssh://[^\s@/]+@[A-Za-z0-9.-]+(?::[0-9]+)?/[^\s?#'\"]+"
    r"|git@[A-Za-z0-9.-]+:[^\s?#'\"]+)$"
)


@dataclass
class _Manifest:
    path: Path
    text: str
    docs: list[Any]


def _load(root: Path) -> list[_Manifest]:
    directory = root / ARGOCD_DIR
    if not directory.is_dir():
        raise GitOpsError(f"{ARGOCD_DIR}/ does not exist in {root}")
    manifests = []
    for path in sorted([*directory.rglob("*.yaml"), *directory.rglob("*.yml")]):
        label = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        try:
            docs = [doc for doc in argocd_yaml().load_all(text) if doc is not None]
        except YAMLError as exc:
            raise GitOpsError(f"{label}: malformed YAML: {exc}") from exc
        manifests.append(_Manifest(path, text, docs))
    return manifests


def _sources(doc: Any) -> list[Any]:
    if not isinstance(doc, dict) or doc.get("kind") != "Application":
        return []
    spec = doc.get("spec") or {}
    found = [spec["source"]] if isinstance(spec.get("source"), dict) else []
    found += [item for item in spec.get("sources") or [] if isinstance(item, dict)]
    return [source for source in found if "repoURL" in source]


def current_url(repo: Repo) -> str:
    """The one repository URL that the Applications in argocd/ deploy from."""
    urls = {
        str(source["repoURL"])
        for manifest in _load(repo.root)
        for doc in manifest.docs
        for source in _sources(doc)
    }
    if not urls:
        raise GitOpsError(f"no Application in {ARGOCD_DIR}/ sets a repoURL")
    if len(urls) > 1:
        raise GitOpsError(
            f"{ARGOCD_DIR}/ names several repo URLs ({', '.join(sorted(urls))}); "
            "make them agree by hand first"
        )
    return urls.pop()


def set_repo(repo: Repo, url: str) -> list[str]:
    """Replace the repository URL in every Application source and AppProject sourceRepos.

    Returns the files changed (relative to the repository). All files are rendered in memory
    first; only then are they replaced, each atomically.
    """
    if not _URL.match(url):
        raise GitOpsError(
            f"repo URL {url!r} is not a Git URL "
            "(https://, http://, ssh://, git:// or git@host:path)"
        )
    old = current_url(repo)
    if old == url:
        return []
    pending: list[tuple[Path, str]] = []
    for manifest in _load(repo.root):
        touched = False
        for doc in manifest.docs:
            for source in _sources(doc):
                if source["repoURL"] == old:
                    source["repoURL"] = keep_style(source["repoURL"], url)
                    touched = True
            if isinstance(doc, dict) and doc.get("kind") == "AppProject":
                repos = (doc.get("spec") or {}).get("sourceRepos") or []
                for index, value in enumerate(repos):
                    if value == old:
                        repos[index] = keep_style(value, url)
                        touched = True
        if touched:
            out = io.StringIO()
            yaml = argocd_yaml()
            yaml.explicit_start = len(manifest.docs) > 1 or manifest.text.lstrip().startswith("---")
            yaml.dump_all(manifest.docs, out)
            pending.append((manifest.path, out.getvalue()))
    for path, text in pending:
        atomic_write(path, text.encode("utf-8"))
    return [path.relative_to(repo.root).as_posix() for path, _ in pending]
