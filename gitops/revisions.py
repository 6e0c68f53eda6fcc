"""What an environment runs at a given commit: its files, its rendered manifests, its image.

Staging runs the tip of main; production runs the commit its Application pins. Both are
answered the same way: read `deploy/` as it was at that commit, never the working tree.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gitops.environments import application_path, follows_main, parse_pin
from gitops.errors import GitOpsError
from gitops.kustomization import ImageEntry, parse_entry
from gitops.release import RELEASE_KUSTOMIZATION, RELEASE_RECORD, ReleaseRecord, parse_record
from gitops.render import render_text
from gitops.repo import KUSTOMIZATION, OVERLAYS_DIR, Repo

_SHA = re.compile(r"^[0-9a-f]{40}$")


def resolve(repo: Repo, rev: str) -> str:
    """The full commit id of `rev`; GitOpsError naming it if there is no such commit."""
    try:
        return repo.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except GitOpsError as exc:
        raise GitOpsError(f"{rev!r} is not a commit of this repository") from exc


def read_at(repo: Repo, rev: str, path: str) -> str | None:
    """The text of `path` at commit `rev`, or None if it did not exist there."""
    listed = repo.git("ls-tree", "--name-only", rev, "--", path).strip()
    if not listed:
        return None
    return repo.git("show", f"{rev}:{path}")


def pinned_revision(repo: Repo, env: str, rev: str) -> str:
    """The commit `env` runs when main is at `rev` (rev itself for the first environment)."""
    if follows_main(env):
        return rev
    label = f"{application_path(env).as_posix()} at {rev[:12]}"
    text = read_at(repo, rev, application_path(env).as_posix())
    if text is None:
        raise GitOpsError(f"{label} does not exist")
    pinned = parse_pin(text, env, label=label)
    if not _SHA.match(pinned):
        return rev  # a branch: before it was pinned, the environment followed main
    return resolve(repo, pinned)


def image_at(repo: Repo, env: str, rev: str, image_name: str) -> ImageEntry | None:
    """The image entry `env`'s overlay uses at commit `rev`, or None if there is none.

    The shared release component holds it; commits from before that layout held it in the
    overlay itself, which is still read so that history and old pins stay readable.
    """
    for path in ((OVERLAYS_DIR / env / KUSTOMIZATION).as_posix(), RELEASE_KUSTOMIZATION):
        text = read_at(repo, rev, path)
        if text is None:
            continue
        try:
            return parse_entry(text, image_name=image_name, label=f"{path} at {rev[:12]}")
        except GitOpsError:
            continue
    return None


def record_at(repo: Repo, rev: str) -> ReleaseRecord | None:
    """The release record at commit `rev`, or None before the first recorded release."""
    text = read_at(repo, rev, RELEASE_RECORD)
    if text is None:
        return None
    return parse_record(text, label=f"{RELEASE_RECORD} at {rev[:12]}")


def matching(record: ReleaseRecord | None, entry: ImageEntry | None) -> ReleaseRecord | None:
    """`record` if it describes the image of `entry` (else None: it is about another image)."""
    if record is None or entry is None or record.image != entry.display():
        return None
    return record


@contextmanager
def checkout(repo: Repo, rev: str) -> Iterator[Path]:
    """A temporary directory holding the tree exactly as it was at commit `rev`.

    The whole tree, not only deploy/: an overlay may include files from elsewhere in the
    repository (the kind loop's sizing transformer lives in scripts/kind).
    """
    data = repo.git_bytes("archive", "--format=tar", rev)
    scratch = Path(tempfile.mkdtemp(prefix="gitops-rev-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            # The "data" filter refuses links out of the tree and absolute paths.
            archive.extractall(scratch, filter="data")
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class Rendered:
    """The manifests of one environment at one commit, as Argo CD would apply them."""

    env: str
    revision: str
    text: str


def render_env(repo: Repo, env: str, rev: str, command: list[str]) -> Rendered:
    """Render `env`'s overlay from commit `rev` (not from the working tree)."""
    label = f"{(OVERLAYS_DIR / env).as_posix()} at {rev[:12]}"
    with checkout(repo, rev) as tree:
        overlay = tree / OVERLAYS_DIR / env
        if not (overlay / KUSTOMIZATION).is_file():
            raise GitOpsError(f"{label} does not exist")
        return Rendered(env, rev, render_text(overlay, command, label=label))
