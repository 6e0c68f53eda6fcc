"""Which commits changed the image of an environment, read from git history."""

from __future__ import annotations

from dataclasses import dataclass

from gitops.errors import GitOpsError
from gitops.kustomization import ImageEntry, parse_entry
from gitops.repo import Repo

_SEP = "\x1f"


@dataclass(frozen=True)
class Commit:
    """The commit metadata shown next to a change."""

    sha: str
    parents: tuple[str, ...]
    date: str
    author: str
    subject: str

    @property
    def revert_command(self) -> str:
        """The exact command that undoes this commit on the current branch."""
        # A merge that itself changed the image is undone relative to its mainline parent.
        if len(self.parents) > 1:
            return f"git revert -m 1 {self.sha}"
        return f"git revert {self.sha}"


@dataclass(frozen=True)
class Change:
    """A commit that changed the image entry, with the value before and after it."""

    commit: Commit
    before: ImageEntry | None
    after: ImageEntry | None

    @property
    def is_bump(self) -> bool:
        """True when the commit replaced one image with another (not the first introduction)."""
        return self.before is not None and self.after is not None


def _key(entry: ImageEntry | None) -> tuple[str | None, ...] | None:
    if entry is None:
        return None
    return (entry.new_name, entry.new_tag, entry.digest)


def _read_blobs(repo: Repo, specs: list[str]) -> dict[str, str | None]:
    """Contents of many `<rev>:<path>` specs through one `git cat-file --batch`."""
    unique = list(dict.fromkeys(specs))
    if not unique:
        return {}
    out = repo.git_bytes("cat-file", "--batch", stdin=("\n".join(unique) + "\n").encode())
    result: dict[str, str | None] = {}
    pos = 0
    for spec in unique:
        end = out.index(b"\n", pos)
        header = out[pos:end].decode("utf-8", "replace")
        pos = end + 1
        if header.endswith((" missing", " ambiguous")):
            result[spec] = None
            continue
        size = int(header.rsplit(" ", 1)[1])
        result[spec] = out[pos : pos + size].decode("utf-8", "replace")
        pos += size + 1  # the body is followed by a newline
    return result


def _entry_or_none(text: str | None, *, image_name: str, label: str) -> ImageEntry | None:
    if text is None:
        return None
    try:
        return parse_entry(text, image_name=image_name, label=label)
    except GitOpsError:
        # An old revision that was broken or had no entry: treat it as "no image".
        return None


def changes(repo: Repo, env: str, *, image_name: str, rev: str = "HEAD") -> list[Change]:
    """Commits reachable from `rev` that changed `env`'s image, newest first (git log order)."""
    path = repo.relative(repo.kustomization_path(env))
    try:
        repo.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except GitOpsError:
        return []  # a repository without commits has no history yet
    fmt = _SEP.join(["%H", "%P", "%cI", "%an", "%s"])
    log = repo.git("log", f"--format={fmt}", rev, "--", path)
    commits: list[Commit] = []
    for line in log.splitlines():
        sha, parents, date, author, subject = line.split(_SEP, 4)
        commits.append(Commit(sha, tuple(parents.split()), date, author, subject))
    specs: list[str] = []
    for commit in commits:
        specs.append(f"{commit.sha}:{path}")
        if commit.parents:
            specs.append(f"{commit.parents[0]}:{path}")
    blobs = _read_blobs(repo, specs)
    result: list[Change] = []
    for commit in commits:
        label = f"{path} at {commit.sha[:12]}"
        after = _entry_or_none(blobs[f"{commit.sha}:{path}"], image_name=image_name, label=label)
        before = None
        if commit.parents:
            before = _entry_or_none(
                blobs[f"{commit.parents[0]}:{path}"], image_name=image_name, label=label
            )
        if _key(before) != _key(after):
            result.append(Change(commit, before, after))
    return result
