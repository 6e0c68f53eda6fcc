"""GitHub's REST API, the little the tool needs: commit statuses and pull requests.

Standard library only (urllib), so the write jobs install nothing beyond the hashed gitops
lock. Every failure is one GitOpsError line naming the call, GitHub's status and message,
and what to check; the token never appears in it.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from gitops.errors import GitOpsError
from gitops.repo import Repo

DEFAULT_API_URL = "https://api.github.com"
API_URL_ENV = "GITHUB_API_URL"
_SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# git@github.com:owner/name.git, https://github.com/owner/name(.git), ssh://git@github.com/...
_GITHUB_REMOTE = re.compile(
    r"^(?:https://(?:[^@/]+@)?github\.com/|git@github\.com:|ssh://git@github\.com/)"
    r"(?P<slug>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$"
)
_TIMEOUT_S = 30
_AUTO_MERGE = (
    "mutation($id: ID!) { enablePullRequestAutoMerge("
    "input: {pullRequestId: $id, mergeMethod: SQUASH}) { pullRequest { number } } }"
)


def check_repository(repository: str) -> str:
    """`owner/name`, or a GitOpsError saying what it should look like."""
    if not _SLUG.match(repository):
        raise GitOpsError(f"GitHub repository {repository!r} is not <owner>/<name>")
    return repository


def repository_of_remote(url: str) -> str | None:
    """`owner/name` of a github.com remote URL; None for any other host or a local path."""
    match = _GITHUB_REMOTE.match(url.strip())
    return match.group("slug") if match else None


def _message(body: bytes) -> str:
    """GitHub's own explanation from an error body: its message and the first detail."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ""
    if not isinstance(data, dict):
        return ""
    text = str(data.get("message") or "")
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        detail = first.get("message") if isinstance(first, dict) else first
        if detail:
            text = f"{text}: {detail}" if text else str(detail)
    return " ".join(text.split())


class GitHubAPI:
    """One repository's API, authenticated with a token when one is given."""

    def __init__(self, repository: str, token: str | None, api_url: str = DEFAULT_API_URL) -> None:
        if not api_url.startswith(("https://", "http://")):
            raise GitOpsError(f"GitHub API URL {api_url!r} is not http(s)")
        self.repository = check_repository(repository)
        self.token = token
        self.api_url = api_url.rstrip("/")

    @classmethod
    def from_environment(cls, repository: str, token: str | None) -> GitHubAPI:
        """The API address as GitHub Actions provides it ($GITHUB_API_URL; GHES has its own)."""
        return cls(repository, token, os.environ.get(API_URL_ENV) or DEFAULT_API_URL)

    @property
    def graphql_url(self) -> str:
        # github.com: api.github.com/graphql; GitHub Enterprise Server: /api/v3 -> /api/graphql.
        if self.api_url.endswith("/api/v3"):
            return self.api_url[: -len("/v3")] + "/graphql"
        return self.api_url + "/graphql"

    def url(self, path: str) -> str:
        """The address of `path` under this repository (`path` starts with '/' or '?')."""
        return f"{self.api_url}/repos/{self.repository}{path}"

    def call(
        self, method: str, url: str, body: Any = None, *, hint: str = ""
    ) -> tuple[Any, str | None]:
        """The decoded JSON answer and the next page's URL (from the Link header)."""
        # Pages come from the Link header GitHub sends: the token goes to its API only.
        if not (url.startswith(self.api_url + "/") or url == self.graphql_url):
            raise GitOpsError(f"refusing to send the token outside {self.api_url}: {url}")
        where = urllib.parse.urlsplit(url).path
        data = None if body is None else json.dumps(body).encode("utf-8")
        # http(s) only: the API address is checked in __init__ and every URL starts with it.
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", "2022-11-28")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
                raw = response.read()
                link = response.headers.get("Link")
        except urllib.error.HTTPError as exc:
            said = _message(exc.read())
            said = f": {said}" if said else ""
            extra = f" {hint}" if hint and exc.code in (401, 403, 404) else ""
            raise GitOpsError(
                f"GitHub answered {exc.code} for {method} {where}{said}{extra}"
            ) from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GitOpsError(f"cannot reach GitHub at {self.api_url}: {reason}") from exc
        if not raw.strip():
            return None, _next_link(link)
        try:
            return json.loads(raw), _next_link(link)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GitOpsError(
                f"GitHub returned something that is not JSON for {method} {where}"
            ) from exc


def _next_link(header: str | None) -> str | None:
    # RFC 8288 as GitHub writes it: <url>; rel="next", <url>; rel="last"
    for part in (header or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params:
            return url.strip().strip("<>")
    return None


@dataclass(frozen=True)
class PullRequest:
    """The fields of a pull request the write-back uses."""

    number: int
    url: str
    node_id: str


_PR_HINT = "(is the GitHub App installed on the repository, with Pull requests: write?)"


def _pull(data: Any, *, what: str) -> PullRequest:
    if not isinstance(data, dict):
        raise GitOpsError(f"GitHub returned no pull request for {what}")
    number, url, node_id = data.get("number"), data.get("html_url"), data.get("node_id")
    if not isinstance(number, int) or not isinstance(url, str) or not isinstance(node_id, str):
        raise GitOpsError(f"GitHub's pull request for {what} lacks number, html_url or node_id")
    return PullRequest(number, url, node_id)


class PullRequests:
    """Open, find, update and auto-merge pull requests of one repository."""

    def __init__(self, api: GitHubAPI) -> None:
        self.api = api

    def find_open(self, head: str, base: str) -> PullRequest | None:
        """The open pull request from branch `head` (of this repository) into `base`."""
        owner = self.api.repository.split("/", 1)[0]
        query = urllib.parse.urlencode(
            {"state": "open", "head": f"{owner}:{head}", "base": base, "per_page": "100"}
        )
        data, _ = self.api.call("GET", self.api.url(f"/pulls?{query}"), hint=_PR_HINT)
        if not isinstance(data, list):
            raise GitOpsError(f"GitHub returned no list of pull requests for {head}")
        return _pull(data[0], what=head) if data else None

    def create(self, *, head: str, base: str, title: str, body: str) -> PullRequest:
        payload = {"title": title, "head": head, "base": base, "body": body}
        data, _ = self.api.call("POST", self.api.url("/pulls"), payload, hint=_PR_HINT)
        return _pull(data, what=head)

    def update(self, number: int, *, title: str, body: str) -> PullRequest:
        payload = {"title": title, "body": body}
        data, _ = self.api.call("PATCH", self.api.url(f"/pulls/{number}"), payload, hint=_PR_HINT)
        return _pull(data, what=f"#{number}")

    def enable_auto_merge(self, pull: PullRequest) -> None:
        """Squash-merge once the required checks pass (GraphQL only; REST has no call for it)."""
        payload = {"query": _AUTO_MERGE, "variables": {"id": pull.node_id}}
        data, _ = self.api.call("POST", self.api.graphql_url, payload, hint=_PR_HINT)
        errors = data.get("errors") if isinstance(data, dict) else None
        if errors:
            first = errors[0].get("message") if isinstance(errors[0], dict) else errors[0]
            raise GitOpsError(
                f"GitHub refused auto-merge for {pull.url}: {first} (allow auto-merge in the "
                "repository settings, and protect the branch with required checks)"
            )


def repository_from_remote(repo: Repo, remote: str) -> str | None:
    """`owner/name` of `remote` when it is a github.com URL."""
    try:
        url = repo.git("remote", "get-url", remote)
    except GitOpsError:
        return None
    return repository_of_remote(url)
