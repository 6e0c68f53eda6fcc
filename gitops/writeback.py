"""Write one edit back to the branch Argo CD deploys: fetch, edit, commit, push or open a PR.

Every command that changes GitOps state on the remote goes through `write_back`, so there is
one place that knows how (argocd-image-updater's `pkg/argocd/git.go` has the same shape):

1. fetch the newest tip of the branch;
2. check it out in a scratch worktree (the caller's checkout and its uncommitted files are
   never touched) and run the edit there, against that tip;
3. commit only the paths the edit names, as the configured identity;
4. push the commit to the branch, or push it to a head branch and open (or update) a pull
   request through GitHub's REST API (gitops.github).

A push rejected because the branch moved on starts again at 1: the edit is re-applied to the
new tip instead of rebased, because a concurrent bump changes the very same lines and a
textual rebase would conflict. Nothing is committed or pushed when the edit fails.

The token (a GitHub App installation token in the workflows) is handed to the fetch and the
push only, as environment of those two processes, and to the API requests as their header; it
is never written to git config.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gitops.errors import GitOpsError
from gitops.github import GitHubAPI, PullRequests, check_repository, repository_from_remote
from gitops.repo import Repo

WRITEBACK_LOCK = "gitops-writeback.lock"


class PushRejectedError(GitOpsError):
    """The remote still refused the push after the last attempt (exit code 1)."""

    exit_code = 1


class PullRequestError(GitOpsError):
    """The head branch is pushed, but GitHub did not open or update its pull request.

    Main is untouched and running the command again retries; the message says so, instead of
    the usual "nothing was pushed".
    """


@dataclass(frozen=True)
class Identity:
    """Who the commit names as author and committer."""

    name: str
    email: str


# The identity GitHub shows for Actions; a workflow that pushes as a GitHub App passes the
# App's own `<slug>[bot]` identity instead.
ACTIONS_BOT = Identity(
    "github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com"
)


@dataclass(frozen=True)
class Proposal:
    """What an edit changed: the files to commit, the message, and (for a PR) the branch."""

    paths: tuple[str, ...]
    subject: str
    body: str = ""
    # The head branch of the pull request; the same branch for the same change, so running a
    # command again updates its open pull request instead of opening another.
    branch: str | None = None
    # The pull request's description when it should say more than the commit message (the
    # promotion's evidence and rendered diff); the commit body otherwise.
    pr_body: str | None = None


# Runs inside the scratch worktree on the newest tip; returns None when there is nothing to
# change (the tip already has it) and raises GitOpsError to abort without committing.
Edit = Callable[[Repo], Proposal | None]


@dataclass(frozen=True)
class WriteBack:
    """Where and how `write_back` delivers the commit."""

    remote: str = "origin"
    branch: str = "main"
    # "push": straight to `branch` (the release bot, a bypass actor of the ruleset);
    # "pull-request": to the proposal's branch, with a pull request into `branch`.
    mode: Literal["push", "pull-request"] = "push"
    attempts: int = 5
    retry_delay_s: float = 2.0
    identity: Identity = ACTIONS_BOT
    # A GitHub token for the fetch, the push and the API; None: whatever git already has.
    token: str | None = None
    # Ask GitHub to merge the pull request once its required checks pass (mode pull-request).
    auto_merge: bool = False
    # owner/name for the pull request API; None: read from the remote's github.com URL.
    github_repo: str | None = None
    lock_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise GitOpsError("push attempts must be at least 1")
        if self.retry_delay_s < 0:
            raise GitOpsError("the retry delay must not be negative")
        if not self.remote or not self.branch:
            raise GitOpsError("the remote and the branch must not be empty")
        if self.auto_merge and self.mode != "pull-request":
            raise GitOpsError("auto-merge applies to pull requests only")


@dataclass(frozen=True)
class Written:
    """What `write_back` did."""

    changed: bool
    # The pushed commit, or the tip that already had the change.
    commit: str
    # The branch the commit went to (None when nothing changed).
    pushed_to: str | None
    attempts: int
    subject: str | None = None
    pull_request: str | None = None


def auth_env(token: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment additions that let one git process authenticate with `token`.

    The header is the one actions/checkout configures, but passed through GIT_CONFIG_* for
    the fetch and the push alone, so no file (and no later step) ever holds it.
    """
    if not token:
        return {}
    environ = os.environ if base is None else base
    try:
        index = int(environ.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        index = 0
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
    return {
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": "http.extraheader",
        f"GIT_CONFIG_VALUE_{index}": f"AUTHORIZATION: basic {basic}",
    }


def workflow_run_url() -> str | None:
    """The URL of the GitHub Actions run doing this, for commit and PR bodies."""
    run_id = os.environ.get("GITHUB_RUN_ID")
    repository = os.environ.get("GITHUB_REPOSITORY")
    if not (run_id and repository):
        return None
    server = os.environ.get("GITHUB_SERVER_URL", "https://github.com")
    return f"{server}/{repository}/actions/runs/{run_id}"


def write_back(
    repo: Repo, edit: Edit, settings: WriteBack, *, log: Callable[[str], None]
) -> Written:
    """Apply `edit` to the newest `settings.branch` and deliver it; see the module docstring.

    `log` receives one line per notable event (a retry, the push). Raises GitOpsError when the
    edit fails (nothing committed or pushed) and PushRejectedError when every attempt was refused.
    """
    # Known before anything is fetched or pushed: a pull request needs a repository to open in.
    pulls = _pull_requests(repo, settings) if settings.mode == "pull-request" else None
    with repo.lock(settings.lock_timeout_s, name=WRITEBACK_LOCK):
        for attempt in range(1, settings.attempts + 1):
            try:
                tip = _fetch(repo, settings)
            except GitOpsError as exc:
                _backoff(
                    settings,
                    attempt,
                    f"fetching {settings.remote}/{settings.branch} failed ({exc})",
                    log,
                )
                continue
            with _scratch_worktree(repo, tip) as work:
                proposal = edit(work)
                if proposal is None:
                    return Written(False, tip, None, attempt)
                commit = _commit(work, proposal, settings.identity)
                if pulls is not None:
                    return _open_pull_request(work, pulls, commit, proposal, settings, attempt, log)
                if _push(work, commit, f"refs/heads/{settings.branch}", settings, force=False):
                    _fast_forward_checkout(repo, settings.branch, commit)
                    return Written(True, commit, settings.branch, attempt, proposal.subject)
            _backoff(
                settings,
                attempt,
                f"push rejected ({settings.remote}/{settings.branch} moved on)",
                log,
            )
    raise PushRejectedError(
        f"could not push to {settings.remote}/{settings.branch} in {settings.attempts} attempts"
    )


def _fetch(repo: Repo, settings: WriteBack) -> str:
    env = auth_env(settings.token)
    repo.git_env(env, "fetch", "--quiet", "--no-tags", settings.remote, settings.branch)
    return repo.git("rev-parse", "--verify", "FETCH_HEAD^{commit}").strip()


@contextmanager
def _scratch_worktree(repo: Repo, tip: str) -> Iterator[Repo]:
    """A detached worktree at `tip` outside the caller's checkout, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="gitops-writeback-"))
    try:
        repo.git("worktree", "add", "--quiet", "--detach", "--force", str(path), tip)
        yield Repo(root=path, git_dir=repo.git_dir)
    finally:
        try:
            repo.git("worktree", "remove", "--force", str(path))
        except GitOpsError:
            shutil.rmtree(path, ignore_errors=True)
            repo.git("worktree", "prune")
        shutil.rmtree(path, ignore_errors=True)


def _commit(work: Repo, proposal: Proposal, identity: Identity) -> str:
    if not proposal.paths:
        raise GitOpsError("the edit named no file to commit")
    work.git("add", "--", *proposal.paths)
    staged = work.git("diff", "--cached", "--name-only").split()
    unexpected = sorted(set(staged) - set(proposal.paths))
    if unexpected:
        raise GitOpsError(f"the edit staged files it did not name: {', '.join(unexpected)}")
    message = proposal.subject + (f"\n\n{proposal.body}" if proposal.body else "")
    work.git(
        "-c",
        f"user.name={identity.name}",
        "-c",
        f"user.email={identity.email}",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "--quiet",
        "--file=-",
        "--",
        *proposal.paths,
        stdin=message + "\n",
    )
    return work.git("rev-parse", "HEAD").strip()


def _push(work: Repo, commit: str, ref: str, settings: WriteBack, *, force: bool) -> bool:
    """Push `commit` to `ref`; False when the remote rejected it (the branch moved on)."""
    args = [
        "push",
        "--quiet",
        "--porcelain",
        settings.remote,
        f"{'+' if force else ''}{commit}:{ref}",
    ]
    try:
        work.git_env(auth_env(settings.token), *args)
    except GitOpsError:
        return False
    return True


def _pull_requests(repo: Repo, settings: WriteBack) -> PullRequests:
    slug = settings.github_repo or repository_from_remote(repo, settings.remote)
    if not slug:
        raise GitOpsError(
            f"a pull request needs the GitHub repository, and {settings.remote} is no github.com "
            "URL: set GITHUB_REPOSITORY=<owner>/<name>"
        )
    if not settings.token:
        raise GitOpsError("a pull request needs a GitHub token: set GITOPS_TOKEN")
    return PullRequests(GitHubAPI.from_environment(check_repository(slug), settings.token))


def _open_pull_request(
    work: Repo,
    pulls: PullRequests,
    commit: str,
    proposal: Proposal,
    settings: WriteBack,
    attempt: int,
    log: Callable[[str], None],
) -> Written:
    head = proposal.branch
    if not head:
        raise GitOpsError("a pull request needs a head branch; the edit named none")
    if head == settings.branch:
        raise GitOpsError(f"the pull request branch must not be {settings.branch} itself")
    # Asked before the push, so a token or repository GitHub refuses leaves no branch behind.
    existing = pulls.find_open(head, settings.branch)
    # Forced: the branch belongs to this command, and a re-run replaces its earlier commit.
    if not _push(work, commit, f"refs/heads/{head}", settings, force=True):
        raise PushRejectedError(f"could not push {head} to {settings.remote}")
    log(f"pushed {commit} to {settings.remote}/{head}: {proposal.subject}")
    description = proposal.pr_body or proposal.body or proposal.subject
    try:
        if existing is not None:
            # The evidence of this run replaces that of the run that opened it.
            pull = pulls.update(existing.number, title=proposal.subject, body=description)
            log(f"updated the open pull request {pull.url}")
        else:
            pull = pulls.create(
                head=head, base=settings.branch, title=proposal.subject, body=description
            )
            log(f"opened the pull request {pull.url}")
        if settings.auto_merge:
            pulls.enable_auto_merge(pull)
            log(f"auto-merge enabled: {pull.url} merges once its required checks pass")
    except GitOpsError as exc:
        raise PullRequestError(
            f"{exc}; {head} is pushed but {settings.branch} is unchanged: run the command "
            "again once that is fixed"
        ) from exc
    return Written(True, commit, head, attempt, proposal.subject, pull.url)


def _fast_forward_checkout(repo: Repo, branch: str, commit: str) -> None:
    """Move the caller's checkout to the pushed commit when it is on `branch` and loses nothing."""
    try:
        current = repo.git("symbolic-ref", "--quiet", "--short", "HEAD").strip()
    except GitOpsError:
        return  # detached: leave it where it is
    if current != branch:
        return
    if repo.git("status", "--porcelain", "--untracked-files=no").strip():
        return
    try:
        repo.git("merge-base", "--is-ancestor", "HEAD", commit)
    except GitOpsError:
        return
    repo.git("merge", "--quiet", "--ff-only", commit)


def _backoff(settings: WriteBack, attempt: int, reason: str, log: Callable[[str], None]) -> None:
    if attempt >= settings.attempts:
        log(reason)
        return
    # Linear growth with jitter, so racing jobs do not retry in lockstep.
    wait_s = settings.retry_delay_s * attempt + random.uniform(0, settings.retry_delay_s)  # noqa: S311
    log(f"{reason}; retrying in {wait_s:.1f}s")
    time.sleep(wait_s)
