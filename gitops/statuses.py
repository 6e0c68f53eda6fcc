"""Commit statuses: the evidence Argo CD Notifications leaves on the commits it deployed.

Argo CD, inside the cluster, sets `argocd/iris-<env>` on the commit it synced (success when
synced and healthy, failure when degraded or the sync failed). The promotion reads them from
GitHub by default. `StatusSource` is the small interface the promotion needs; `GitHubStatuses`
reads GitHub's REST API, `RecordedStatuses` a JSON file of the same shape (for offline runs
and the tests). `ArgoCDApplication` is for clusters whose Argo CD cannot reach GitHub (the
kind loop): it reads the source environment's Application with kubectl and derives the same
status from it, for the one commit that Application has synced.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from gitops.errors import GitOpsError
from gitops.github import API_URL_ENV, DEFAULT_API_URL, GitHubAPI

_HINT = "(does the token have Commit statuses: read on the repository?)"
_STATES = frozenset({"success", "failure", "error", "pending"})
_TIMEOUT_S = 30


@dataclass(frozen=True)
class CommitStatus:
    """One status as GitHub stores it (the fields the promotion reads)."""

    context: str
    state: str
    created_at: datetime
    description: str
    target_url: str | None


def parse_status(item: Any, *, label: str) -> CommitStatus:
    """A status object of GitHub's API (or of a recorded file)."""
    if not isinstance(item, dict):
        raise GitOpsError(f"{label}: a status is not an object")
    context, state, created = item.get("context"), item.get("state"), item.get("created_at")
    if not isinstance(context, str) or state not in _STATES or not isinstance(created, str):
        raise GitOpsError(f"{label}: a status lacks context, state or created_at")
    when = _parse_time(created, label=label, what="created_at")
    url = item.get("target_url")
    return CommitStatus(
        context=context,
        state=str(state),
        created_at=when,
        description=str(item.get("description") or ""),
        target_url=url if isinstance(url, str) else None,
    )


def latest(statuses: list[CommitStatus], context: str) -> CommitStatus | None:
    """The newest status of `context`: GitHub keeps every one, the newest is what counts."""
    found = [status for status in statuses if status.context == context]
    return max(found, key=lambda status: status.created_at) if found else None


class StatusSource(Protocol):
    """Where the promotion reads commit statuses from."""

    @property
    def where(self) -> str:
        """Where the statuses come from, for a refusal that finds none."""
        ...

    def statuses(self, sha: str) -> list[CommitStatus]:
        """Every status set on commit `sha` (any order)."""
        ...


class RecordedStatuses:
    """Statuses from a JSON file: `{"<commit>": [<status objects as GitHub returns them>]}`."""

    def __init__(self, path: Path) -> None:
        label = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise GitOpsError(f"{label}: no such statuses file") from exc
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GitOpsError(f"{label}: not a JSON statuses file: {exc}") from exc
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise GitOpsError(f"{label}: expected an object of commit -> list of statuses")
        self._by_sha = {
            str(sha): [parse_status(item, label=label) for item in items]
            for sha, items in data.items()
        }
        self.where = f"the statuses file {label}"

    def statuses(self, sha: str) -> list[CommitStatus]:
        return list(self._by_sha.get(sha, []))


class GitHubStatuses:
    """GitHub's `GET /repos/{owner}/{repo}/commits/{ref}/statuses`, with a read-only token."""

    def __init__(self, repository: str, token: str | None, api_url: str = DEFAULT_API_URL) -> None:
        self.api = GitHubAPI(repository, token, api_url)
        self.repository = self.api.repository
        self.where = (
            f"the commit statuses of {repository} (Argo CD Notifications sets them, docs/gitops.md)"
        )

    @classmethod
    def from_environment(cls, repository: str, token: str | None = None) -> GitHubStatuses:
        """`token`, else GITHUB_TOKEN or GH_TOKEN; the API address from GITHUB_API_URL."""
        token = token or os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
        return cls(repository, token, os.environ.get(API_URL_ENV) or DEFAULT_API_URL)

    def statuses(self, sha: str) -> list[CommitStatus]:
        url: str | None = self.api.url(f"/commits/{urllib.parse.quote(sha)}/statuses?per_page=100")
        found: list[CommitStatus] = []
        pages = 0
        while url and pages < 10:  # at most 1,000 statuses; the newest come first
            data, url = self.api.call("GET", url, hint=_HINT)
            pages += 1
            if not isinstance(data, list):
                raise GitOpsError(f"GitHub returned no list of statuses for {sha}")
            found += [parse_status(item, label=f"GitHub status of {sha[:12]}") for item in data]
        return found


# --- evidence from the cluster: the Application itself -------------------------------------------

KUBECTL_ENV = "GITOPS_KUBECTL"
ARGOCD_NAMESPACE = "argocd"
_SHA = re.compile(r"^[0-9a-f]{40}$")
_RUNNING = frozenset({"Running", "Terminating"})
_FAILED = {"Failed": "failed", "Error": "ended in an error"}


def _field(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _timestamp(value: Any, *, label: str, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise GitOpsError(f"{label}: {what} is not a timestamp")
    return _parse_time(value, label=label, what=what)


def _parse_time(value: str, *, label: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GitOpsError(f"{label}: {what} {value!r} is not a timestamp") from exc
    if when.tzinfo is None:
        raise GitOpsError(f"{label}: {what} {value!r} has no time zone")
    return when


def application_status(application: Any, *, label: str) -> tuple[str, CommitStatus] | None:
    """The commit status Argo CD Notifications would set for an Application, and the commit.

    Read from `status` as Argo CD v3.5.1 writes it: the commit is `sync.revision` (what the
    live state was compared with). Success needs `sync.status` Synced, `health.status`
    Healthy and no sync running or failed; its time, when the environment became healthy at
    that state, is the later of `health.lastTransitionTime` and the last operation's
    `finishedAt` (a sync includes its PostSync hooks, so this is after the smoke test passed).
    A failed or errored last sync, or Degraded health, is failure; anything else is pending.
    None when the Application has compared no commit yet.
    """
    if not isinstance(application, dict) or application.get("kind") != "Application":
        raise GitOpsError(f"{label}: not an Argo CD Application")
    name = _field(application, "metadata", "name")
    if not isinstance(name, str) or not name:
        raise GitOpsError(f"{label}: the Application has no metadata.name")
    revision = _field(application, "status", "sync", "revision")
    if not isinstance(revision, str) or not _SHA.match(revision):
        return None
    sync = _field(application, "status", "sync", "status")
    health = _field(application, "status", "health", "status")
    healthy_since = _timestamp(
        _field(application, "status", "health", "lastTransitionTime"),
        label=label,
        what="status.health.lastTransitionTime",
    )
    operation = _field(application, "status", "operationState")
    phase = _field(operation, "phase")
    started = _timestamp(
        _field(operation, "startedAt"), label=label, what="status.operationState.startedAt"
    )
    finished = _timestamp(
        _field(operation, "finishedAt"), label=label, what="status.operationState.finishedAt"
    )
    reconciled = _timestamp(
        _field(application, "status", "reconciledAt"), label=label, what="status.reconciledAt"
    )
    message = " ".join(str(_field(operation, "message") or "").split())[:200]

    def status(state: str, when: datetime | None, description: str) -> tuple[str, CommitStatus]:
        # Without any timestamp the status is only informative: the gate refuses anything
        # but success before it looks at the time, and success always has one.
        at = when or reconciled or datetime.fromtimestamp(0, UTC)
        return revision, CommitStatus(f"argocd/{name}", state, at, description, None)

    summary = f"{name} is {sync or 'Unknown'} and {health or 'Unknown'} at {revision[:12]}"
    if phase in _RUNNING:
        return status("pending", started, f"{name}: a sync is {phase.lower()} ({message})")
    if phase in _FAILED:
        return status("failure", finished, f"{name}: the last sync {_FAILED[phase]}: {message}")
    if sync != "Synced":
        return status("pending", reconciled, summary)
    if health == "Degraded":
        return status("failure", healthy_since, summary)
    if health != "Healthy":
        return status("pending", healthy_since, summary)
    since = max((t for t in (healthy_since, finished) if t is not None), default=None)
    if since is None:
        return status("pending", None, f"{summary}, but its status says since when")
    return status("success", since, summary)


def application_name(env: str) -> str:
    """The Argo CD Application that deploys `env` (argocd/apps/<env>.yaml)."""
    return f"iris-{env}"


def kubectl_command() -> list[str]:
    """kubectl as $GITOPS_KUBECTL names it (e.g. 'kubectl --context kind-iris'), else kubectl."""
    setting = os.environ.get(KUBECTL_ENV)
    if setting is None:
        return ["kubectl"]
    command = shlex.split(setting)
    if not command:
        raise GitOpsError(f"{KUBECTL_ENV} is set but empty")
    return command


class ArgoCDApplication:
    """The source environment's Application, read from the cluster once, as evidence.

    It knows one commit: the one the Application has synced. Older commits have no status
    here, so a promotion of a commit staging has since moved past is refused.
    """

    def __init__(self, name: str, namespace: str = ARGOCD_NAMESPACE) -> None:
        self.name = name
        self.namespace = namespace
        self._found: tuple[str, CommitStatus] | None = None
        self._read = False

    @property
    def where(self) -> str:
        if self._found is None:
            return f"Argo CD Application {self.name}, which has compared no commit yet"
        sha, status = self._found
        return f"Argo CD Application {self.name}, which is at {sha[:12]} ({status.state})"

    def load(self, application: Any) -> None:
        """Use an Application object as `kubectl get application -o json` prints it."""
        label = f"Application {self.namespace}/{self.name}"
        if _field(application, "metadata", "name") != self.name:
            raise GitOpsError(f"{label}: the object read is not that Application")
        self._found = application_status(application, label=label)
        self._read = True

    def _fetch(self) -> None:
        command = [
            *kubectl_command(),
            "get",
            "application",
            self.name,
            "--namespace",
            self.namespace,
            "--output",
            "json",
        ]
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=_TIMEOUT_S
            )
        except FileNotFoundError as exc:
            raise GitOpsError(
                f"{command[0]} not found: --evidence argocd reads the Application with kubectl "
                f"(set {KUBECTL_ENV}, e.g. 'kubectl --context <ctx>')"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise GitOpsError(f"{shlex.join(command)} did not answer in {_TIMEOUT_S}s") from exc
        if proc.returncode != 0:
            said = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise GitOpsError(f"cannot read the Argo CD Application {self.name}: {said}")
        try:
            application = json.loads(proc.stdout)
        except json.JSONDecodeError as exc:
            raise GitOpsError(f"{shlex.join(command)} printed no JSON object") from exc
        self.load(application)

    def statuses(self, sha: str) -> list[CommitStatus]:
        if not self._read:
            self._fetch()
        if self._found is None or self._found[0] != sha:
            return []
        return [self._found[1]]
