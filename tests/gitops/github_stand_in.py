"""A local HTTP stand-in for the few GitHub REST (and one GraphQL) calls the tool makes.

It checks OUR client, not GitHub: it answers in the shapes GitHub documents for commit
statuses and pull requests, records every request (method, path, query, headers, JSON body),
refuses a wrong token with 401 as GitHub does, refuses a pull request whose head branch the
bare repository playing GitHub does not have (422, as GitHub does), and can be told to fail
any call.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class GitHubStandIn:
    """Answers for one repository `owner/name`; `origin` is the bare repository behind it."""

    def __init__(self, repository: str = "owner/iris-gitops", origin: Path | None = None) -> None:
        self.repository = repository
        self.origin = origin
        self.token: str | None = None
        self.requests: list[Request] = []
        # Raw pages by full path (statuses, with Link headers between pages).
        self.pages: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.pulls: dict[int, dict[str, Any]] = {}
        self.auto_merged: list[str] = []
        # (method, path prefix) -> (status, body): the next matching call fails.
        self.failures: dict[tuple[str, str], tuple[int, Any]] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.handle(self)

            def do_POST(self) -> None:
                stand_in.handle(self)

            def do_PATCH(self) -> None:
                stand_in.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    # --- set-up ---------------------------------------------------------------------------

    def page(self, path: str, body: Any, status: int = 200, **headers: str) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.pages[path] = (status, raw, headers)

    def statuses(self, sha: str, items: list[dict[str, Any]]) -> None:
        """What GET .../commits/<sha>/statuses returns (one page)."""
        self.page(f"/repos/{self.repository}/commits/{sha}/statuses?per_page=100", items)

    def fail(self, method: str, prefix: str, status: int, body: Any) -> None:
        self.failures[(method, prefix)] = (status, body)

    # --- what was asked -------------------------------------------------------------------

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    # --- the server -----------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        request = Request(
            handler.command,
            split.path,
            dict(urllib.parse.parse_qsl(split.query)),
            dict(handler.headers),
            json.loads(raw) if raw else None,
        )
        self.requests.append(request)
        status, body, headers = self.answer(request, handler.path)
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def answer(self, request: Request, full_path: str) -> tuple[int, Any, dict[str, str]]:
        if self.token is not None and request.headers.get("Authorization") != (
            f"Bearer {self.token}"
        ):
            return 401, {"message": "Bad credentials"}, {}
        for (method, prefix), (status, body) in list(self.failures.items()):
            if request.method == method and request.path.startswith(prefix):
                del self.failures[(method, prefix)]
                return status, body, {}
        if full_path in self.pages:
            return self.pages[full_path]
        statuses = re.fullmatch(
            rf"/repos/{re.escape(self.repository)}/commits/(\w+)/statuses", request.path
        )
        if statuses and request.method == "GET":
            # A commit nobody set a status on: an empty list, as GitHub answers.
            if self._has(f"{statuses.group(1)}^{{commit}}"):
                return 200, [], {}
            return 422, {"message": f"No commit found for SHA: {statuses.group(1)}"}, {}
        pulls = f"/repos/{self.repository}/pulls"
        if request.path == pulls and request.method == "GET":
            return 200, self._list(request.query), {}
        if request.path == pulls and request.method == "POST":
            return self._create(request.body)
        if request.path.startswith(pulls + "/") and request.method == "PATCH":
            return self._update(int(request.path.rsplit("/", 1)[1]), request.body)
        if request.path == "/graphql" and request.method == "POST":
            return self._graphql(request.body)
        return 404, {"message": "Not Found"}, {}

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        owner = self.repository.split("/")[0]
        found = []
        for pull in self.pulls.values():
            if query.get("state", "open") not in ("all", pull["state"]):
                continue
            if "head" in query and query["head"] != f"{owner}:{pull['head']['ref']}":
                continue
            if "base" in query and query["base"] != pull["base"]["ref"]:
                continue
            found.append(pull)
        return found

    def _has(self, revision: str) -> bool:
        if self.origin is None:
            return True
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", revision],
            cwd=self.origin,
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def _create(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        missing = [key for key in ("title", "head", "base") if not (body or {}).get(key)]
        if missing:
            return 422, {"message": "Validation Failed", "errors": [f"{missing[0]} missing"]}, {}
        invalid = {"message": "Validation Failed", "errors": [{"field": "head", "code": "invalid"}]}
        if not self._has(f"refs/heads/{body['head']}"):
            return 422, invalid, {}
        owner = self.repository.split("/")[0]
        if self._list({"state": "open", "head": f"{owner}:{body['head']}"}):
            already = f"A pull request already exists for {owner}:{body['head']}."
            return 422, {"message": "Validation Failed", "errors": [{"message": already}]}, {}
        number = len(self.pulls) + 1
        pull = {
            "number": number,
            "html_url": f"https://github.com/{self.repository}/pull/{number}",
            "node_id": f"PR_node{number}",
            "state": "open",
            "title": body["title"],
            "body": body.get("body"),
            "head": {"ref": body["head"]},
            "base": {"ref": body["base"]},
        }
        self.pulls[number] = pull
        return 201, pull, {}

    def _update(self, number: int, body: Any) -> tuple[int, Any, dict[str, str]]:
        if number not in self.pulls:
            return 404, {"message": "Not Found"}, {}
        self.pulls[number].update({k: v for k, v in (body or {}).items() if k in {"title", "body"}})
        return 200, self.pulls[number], {}

    def _graphql(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        node = ((body or {}).get("variables") or {}).get("id")
        if "enablePullRequestAutoMerge" not in str((body or {}).get("query")):
            return 200, {"errors": [{"message": "unknown query"}]}, {}
        matching = [p for p in self.pulls.values() if p["node_id"] == node]
        if not matching:
            unknown = f"Could not resolve to a node with the id {node}"
            return 200, {"errors": [{"message": unknown}]}, {}
        self.auto_merged.append(matching[0]["html_url"])
        return 200, {"data": {"enablePullRequestAutoMerge": {"pullRequest": {"number": 1}}}}, {}


@contextmanager
def serving(stand_in: GitHubStandIn) -> Iterator[GitHubStandIn]:
    """Serve `stand_in` on a loopback port for the length of the block."""
    thread = threading.Thread(target=stand_in.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        stand_in.server.shutdown()
        stand_in.server.server_close()
