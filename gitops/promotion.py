"""Promotion: pin the next environment to a commit the previous one ran healthy.

A promotion moves one line, the target Application's `targetRevision`, to a commit of main.
Everything that determines the target's manifests (the base, its overlay, the release image)
then comes from that commit. The gate before it reads the evidence Argo CD Notifications left
on GitHub: the source environment's status must be success on the commit (or on an older one
whose rendered manifests are identical) and older than the soak time.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from gitops import invocation
from gitops.environments import check_direction, follows_main, read_pin, write_pin
from gitops.errors import GitOpsError
from gitops.history import is_ancestor
from gitops.imageref import ImageRef
from gitops.kustomization import ImageEntry
from gitops.release import ReleaseRecord
from gitops.render import parse_rendered, verify_image
from gitops.repo import Repo
from gitops.revisions import image_at, matching, record_at, render_env, resolve
from gitops.statuses import CommitStatus, StatusSource, application_name, latest

DEFAULT_SOAK = timedelta(minutes=10)
# How far back from the candidate to look for the newest status: the commits since staging's
# last deployment are docs, workflows or production-only changes, a few at most.
_MAX_WALK = 50


def status_context(env: str) -> str:
    """The commit status Argo CD Notifications sets for `env` (argocd/install/notifications)."""
    return f"argocd/{application_name(env)}"


def format_age(delta: timedelta) -> str:
    """`1h 5m`, `12m 3s`, `40s`: how long, for people."""
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


@dataclass(frozen=True)
class Gate:
    """How the promotion checks the source environment's health."""

    statuses: StatusSource | None
    soak: timedelta = DEFAULT_SOAK
    force: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class Evidence:
    """What the source environment reported, and whether that is enough to promote."""

    context: str
    commit: str | None
    status: CommitStatus | None
    refusal: str | None
    soak: timedelta
    checked_at: datetime

    @property
    def age(self) -> timedelta | None:
        """How long ago the status was set."""
        return None if self.status is None else self.checked_at - self.status.created_at


def gather_evidence(
    repo: Repo, source: str, candidate: str, gate: Gate, command: list[str]
) -> Evidence:
    """Find the newest `argocd/iris-<source>` status at or before `candidate` and judge it."""
    context = status_context(source)

    def result(commit: str | None, status: CommitStatus | None, refusal: str | None) -> Evidence:
        return Evidence(context, commit, status, refusal, gate.soak, gate.now)

    if gate.statuses is None:
        return result(
            None,
            None,
            "no source of commit statuses: pass --github-repo OWNER/NAME (in GitHub Actions it "
            "defaults to $GITHUB_REPOSITORY), --statuses-file FILE or --evidence argocd",
        )
    walk = repo.git("rev-list", "--first-parent", f"--max-count={_MAX_WALK}", candidate).split()
    for sha in walk:
        status = latest(gate.statuses.statuses(sha), context)
        if status is not None:
            break
    else:
        return result(
            None,
            None,
            f"no {context} status on {candidate[:12]} or the {len(walk) - 1} commits before it "
            f"in {gate.statuses.where}: {source} has not reported a deployment of it",
        )
    # Identical deploy/ trees render identically; only a change there needs two renders.
    if sha != candidate and repo.git("diff", "--name-only", sha, candidate, "--", "deploy"):
        then = render_env(repo, source, sha, command).text
        now = render_env(repo, source, candidate, command).text
        if then != now:
            return result(
                sha,
                status,
                f"{source} has not deployed {candidate[:12]} yet: the newest {context} is on "
                f"{sha[:12]} and {source}'s manifests changed since; wait for Argo CD to sync, "
                f"or promote that commit with --revision {sha[:12]}",
            )
    if status.state != "success":
        detail = f" ({status.description})" if status.description else ""
        return result(
            sha,
            status,
            f"{context} is {status.state} on {sha[:12]}{detail}; {source} must run it healthy "
            "before it is promoted",
        )
    age = gate.now - status.created_at
    if age < gate.soak:
        return result(
            sha,
            status,
            f"{source} has run {sha[:12]} healthy for {format_age(age)} only; the soak time is "
            f"{format_age(gate.soak)} (wait {format_age(gate.soak - age)}, or set --soak)",
        )
    return result(sha, status, None)


@dataclass(frozen=True)
class Promotion:
    """What `promote` found and did."""

    source: str
    target: str
    path: str
    # None when the clone does not have the commit the target ran (a forced promotion).
    previous: str | None
    candidate: str
    changed: bool
    ref: ImageRef
    previous_image: ImageEntry | None
    record: ReleaseRecord | None
    previous_record: ReleaseRecord | None
    evidence: Evidence
    forced: bool
    commits: tuple[tuple[str, str], ...]
    diff: str


def _check_source_is_committed(repo: Repo, source: str, target_app: str, candidate: str) -> None:
    dirty = [
        line
        for line in repo.git("status", "--porcelain", "--", "deploy", target_app).splitlines()
        if line.strip()
    ]
    if dirty:
        first = dirty[0][3:]
        raise GitOpsError(
            f"uncommitted changes under deploy/ or {target_app} (e.g. {first}): {source} runs "
            "only what is committed and pushed to main; commit and push them, or stash them"
        )
    if not follows_main(source):
        return
    remote = os.environ.get("GITOPS_REMOTE", "origin")
    branch = os.environ.get("GITOPS_BRANCH", "main")
    upstream = f"refs/remotes/{remote}/{branch}"
    try:
        repo.git("rev-parse", "--verify", "--quiet", upstream)
    except GitOpsError:
        return  # a clone without that remote branch: nothing to compare with
    if not is_ancestor(repo, candidate, upstream):
        raise GitOpsError(
            f"{candidate[:12]} is not on {remote}/{branch}: {source} runs only what is pushed "
            f"to {branch}; push it (or fetch, if {remote}/{branch} is out of date) first"
        )


def _check_forward(repo: Repo, target: str, previous: str, candidate: str) -> None:
    if previous != candidate and is_ancestor(repo, candidate, previous):
        raise GitOpsError(
            f"{target} already runs {previous[:12]}, which is newer than {candidate[:12]}; "
            f"promotion never goes backwards. To undo a promotion, revert it: "
            f"`{invocation()} history {target}` prints the git revert command"
        )
    if not is_ancestor(repo, previous, candidate):
        raise GitOpsError(
            f"{candidate[:12]} does not descend from {previous[:12]}, the commit {target} "
            "runs; promote a commit of main"
        )


def rendered_diff(old: str, new: str, *, old_label: str, new_label: str) -> str:
    """A unified diff of two renders ('' when they are identical)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=old_label,
        tofile=new_label,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def promote(
    repo: Repo,
    source: str,
    target: str,
    *,
    revision: str,
    gate: Gate,
    command: list[str],
    image_name: str,
    lock_timeout_s: float,
) -> Promotion:
    """Pin `target` to `revision` once `source` has run it healthy for the soak time.

    Nothing is written unless every check passed (or `gate.force` overrides the evidence,
    never the direction, the cleanliness of the clone or the render).
    """
    check_direction(source, target, repo.environments())
    repo.overlay_dir(source)
    repo.overlay_dir(target)
    with repo.lock(lock_timeout_s):
        pin = read_pin(repo, target)
        candidate = resolve(repo, revision)
        _check_source_is_committed(repo, source, pin.path, candidate)
        unknown_pin = None
        try:
            previous: str | None = resolve(repo, pin.revision)
        except GitOpsError as exc:
            unknown_pin = (
                f"{pin.path}: {target} is pinned to {pin.revision[:12]}, which this clone does "
                "not have (a shallow clone? fetch the full history)"
            )
            if not gate.force:
                raise GitOpsError(f"{unknown_pin}; --force promotes without comparing") from exc
            previous = None
        if previous is not None:
            _check_forward(repo, target, previous, candidate)
        entry = image_at(repo, target, candidate, image_name)
        if entry is None:
            raise GitOpsError(f"{target} has no image at {candidate[:12]}")
        try:
            ref = entry.reference()
        except GitOpsError as exc:
            raise GitOpsError(
                f"{source} has no releasable image to promote at {candidate[:12]}: {exc}"
            ) from exc
        new_render = render_env(repo, target, candidate, command)
        verify_image(
            parse_rendered(new_render.text, label=target),
            ref,
            label=f"{target} at {candidate[:12]}",
        )
        old_text = ""
        if previous is not None:
            old_text = render_env(repo, target, previous, command).text
        # Already there, or a commit that renders the target exactly as its pin does (a
        # change to docs or to argocd/ only): nothing to write, so nothing to gate.
        same = previous is not None and (previous == candidate or old_text == new_render.text)
        if same:
            evidence = Evidence(status_context(source), None, None, None, gate.soak, gate.now)
        else:
            evidence = gather_evidence(repo, source, candidate, gate, command)
        if unknown_pin is not None:
            evidence = replace(
                evidence, refusal=f"{unknown_pin}; {evidence.refusal or 'no other check failed'}"
            )
        if evidence.refusal is not None and not gate.force:
            raise GitOpsError(
                f"not promoting {candidate[:12]} to {target}: {evidence.refusal} "
                "(--force promotes anyway and says so in the pull request)"
            )
        commits: tuple[tuple[str, str], ...] = ()
        if previous is not None:
            log = repo.git("log", "--first-parent", "--format=%H %s", f"{previous}..{candidate}")
            commits = tuple((line[:40], line[41:]) for line in log.splitlines() if line.strip())
        previous_image = None if previous is None else image_at(repo, target, previous, image_name)
        changed = False if same else write_pin(repo, target, candidate)
        return Promotion(
            source=source,
            target=target,
            path=pin.path,
            previous=previous,
            candidate=candidate,
            changed=changed,
            ref=ref,
            previous_image=previous_image,
            record=matching(record_at(repo, candidate), entry),
            previous_record=matching(
                None if previous is None else record_at(repo, previous), previous_image
            ),
            evidence=evidence,
            forced=evidence.refusal is not None,
            commits=commits,
            diff=rendered_diff(
                old_text,
                new_render.text,
                old_label=f"{target}@{pin.revision[:12]}",
                new_label=f"{target}@{candidate[:12]}",
            ),
        )
