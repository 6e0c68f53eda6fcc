"""Commit statuses: the evidence Argo CD Notifications leaves on the commits it deployed.

Argo CD, inside the cluster, sets `argocd/iris-<env>` on the commit it synced (success when
synced and healthy, failure when degraded or the sync failed). The promotion reads them from
GitHub; nothing here talks to the cluster. `StatusSource` is the small interface the
promotion needs; `GitHubStatuses` reads GitHub's REST API, `RecordedStatuses` a JSON file of
the same shape (for offline runs and the tests).
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from gitops.errors import GitOpsError

DEFAULT_API_URL = "https://api.github.com"
_SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_TIMEOUT_S = 30
_STATES = frozenset({"success", "failure", "error", "pending"})


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
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GitOpsError(f"{label}: created_at {created!r} is not a timestamp") from exc
    if when.tzinfo is None:
        raise GitOpsError(f"{label}: created_at {created!r} has no time zone")
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

    def statuses(self, sha: str) -> list[CommitStatus]:
        return list(self._by_sha.get(sha, []))


class GitHubStatuses:
    """GitHub's `GET /repos/{owner}/{repo}/commits/{ref}/statuses`, with a read-only token."""

    def __init__(self, repository: str, token: str | None, api_url: str = DEFAULT_API_URL) -> None:
        if not _SLUG.match(repository):
            raise GitOpsError(f"GitHub repository {repository!r} is not <owner>/<name>")
        if not api_url.startswith(("https://", "http://")):
            raise GitOpsError(f"GitHub API URL {api_url!r} is not http(s)")
        self.repository = repository
        self.token = token
        self.api_url = api_url.rstrip("/")

    @classmethod
    def from_environment(cls, repository: str) -> GitHubStatuses:
        """Token and API address as GitHub Actions provides them (GITHUB_TOKEN, GITHUB_API_URL)."""
        token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
        return cls(repository, token, os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL)

    def _get(self, url: str) -> tuple[Any, str | None]:
        # http(s) only: the API address is checked in __init__, pages come from its Link header.
        request = urllib.request.Request(url)  # noqa: S310
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", "2022-11-28")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
                body = response.read()
                link = response.headers.get("Link")
        except urllib.error.HTTPError as exc:
            hint = (
                " (is GITHUB_TOKEN set, with statuses: read?)"
                if exc.code in (401, 403, 404)
                else ""
            )
            raise GitOpsError(f"GitHub answered {exc.code} for {url}{hint}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GitOpsError(f"cannot reach GitHub at {self.api_url}: {reason}") from exc
        try:
            return json.loads(body), _next_link(link)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GitOpsError(f"GitHub returned something that is not JSON for {url}") from exc

    def statuses(self, sha: str) -> list[CommitStatus]:
        url: str | None = (
            f"{self.api_url}/repos/{self.repository}/commits/"
            f"{urllib.parse.quote(sha)}/statuses?per_page=100"
        )
        found: list[CommitStatus] = []
        pages = 0
        while url and pages < 10:  # at most 1,000 statuses; the newest come first
            if not url.startswith(self.api_url + "/"):
                raise GitOpsError(f"GitHub sent a next page outside {self.api_url}: {url}")
            data, url = self._get(url)
            pages += 1
            if not isinstance(data, list):
                raise GitOpsError(f"GitHub returned no list of statuses for {sha}")
            found += [parse_status(item, label=f"GitHub status of {sha[:12]}") for item in data]
        return found


def _next_link(header: str | None) -> str | None:
    # RFC 8288 as GitHub writes it: <url>; rel="next", <url>; rel="last"
    for part in (header or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params:
            return url.strip().strip("<>")
    return None
