"""Which commits changed the image of an environment, read from git history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gitops.environments import application_path, parse_pin
from gitops.errors import GitOpsError
from gitops.kustomization import ImageEntry, parse_entry
from gitops.repo import Repo
from gitops.revisions import image_at

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
    # For a pinned environment: the commit it ran before and after this change.
    pinned_before: str | None = None
    pinned_after: str | None = None

    @property
    def is_bump(self) -> bool:
        """True when the commit replaced one releasable image (or pin) with another.

        Neither the introduction of the overlay nor the first release (away from the
        placeholder) is: undoing either would deploy an image that does not exist.
        """
        if self.pinned_before is not None or self.pinned_after is not None:
            pinned_both = self.pinned_before is not None and self.pinned_after is not None
            return pinned_both and _releasable(self.before)
        return _releasable(self.before) and self.after is not None


def _releasable(entry: ImageEntry | None) -> bool:
    if entry is None:
        return False
    try:
        entry.reference()
    except GitOpsError:
        return False
    return True


@dataclass(frozen=True)
class CodeCommits:
    """The code commits between the images before and after a change."""

    # "brought": the change deployed them; "rolled back": it took them out again.
    direction: Literal["brought", "rolled back"]
    range: str
    commits: tuple[tuple[str, str], ...]


def image_commit(repo: Repo, tag: str | None) -> str | None:
    """The commit a `sha-<hex>` image tag was built from, when this clone has it."""
    if not tag or not tag.startswith("sha-"):
        return None
    try:
        out = repo.git("rev-parse", "--verify", "--quiet", f"{tag.removeprefix('sha-')}^{{commit}}")
    except GitOpsError:
        return None
    return out.strip() or None


def is_ancestor(repo: Repo, older: str, newer: str) -> bool:
    """True when `older` is reachable from `newer` (or is it)."""
    try:
        repo.git("merge-base", "--is-ancestor", older, newer)
    except GitOpsError:
        return False
    return True


def code_commits(repo: Repo, change: Change) -> CodeCommits | None:
    """The commits outside deploy/overlays/ between the two images of `change`.

    After a bump these are what it deployed; after a rollback, what it took out (and what
    the next release would bring straight back unless the environment is held). None when
    either image names a commit this clone does not have.
    """
    before, after = change.before, change.after
    if before is None or after is None or not (_releasable(before) and _releasable(after)):
        return None
    old = image_commit(repo, before.new_tag)
    new = image_commit(repo, after.new_tag)
    if old is None or new is None or old == new:
        return None
    if is_ancestor(repo, old, new):
        direction: Literal["brought", "rolled back"] = "brought"
        span = f"{old}..{new}"
    elif is_ancestor(repo, new, old):
        direction = "rolled back"
        span = f"{new}..{old}"
    else:
        return None
    log = repo.git(
        "log",
        f"--format=%H{_SEP}%s",
        span,
        "--",
        ".",
        ":(exclude)deploy/overlays",
        ":(exclude)deploy/release",
    )
    found = tuple(
        (sha, subject) for sha, subject in (line.split(_SEP, 1) for line in log.splitlines())
    )
    short = f"{span.split('..')[0][:12]}..{span.split('..')[1][:12]}"
    return CodeCommits(direction, short, found)


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


def _log(repo: Repo, path: str, rev: str) -> list[Commit]:
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
    return commits


def changes(repo: Repo, path: str, *, image_name: str, rev: str = "HEAD") -> list[Change]:
    """Commits reachable from `rev` that changed the image in `path`, newest first."""
    commits = _log(repo, path, rev)
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


def pin_changes(repo: Repo, env: str, *, image_name: str, rev: str = "HEAD") -> list[Change]:
    """Commits that moved `env`'s pin (its promotions), newest first, with the image each
    pinned commit runs before and after."""
    path = application_path(env).as_posix()
    commits = _log(repo, path, rev)
    specs = [f"{c.sha}:{path}" for c in commits]
    specs += [f"{c.parents[0]}:{path}" for c in commits if c.parents]
    blobs = _read_blobs(repo, specs)

    def pinned(spec: str) -> str | None:
        text = blobs.get(spec)
        if text is None:
            return None
        try:
            return parse_pin(text, env, label=spec)
        except GitOpsError:
            return None

    def image(sha: str | None) -> ImageEntry | None:
        if sha is None:
            return None
        try:
            return image_at(repo, env, sha, image_name)
        except GitOpsError:
            return None  # a pin this clone does not have

    result: list[Change] = []
    for commit in commits:
        after = pinned(f"{commit.sha}:{path}")
        before = pinned(f"{commit.parents[0]}:{path}") if commit.parents else None
        if after != before:
            result.append(Change(commit, image(before), image(after), before, after))
    return result
