"""Reading commit statuses: GitHub's REST API over real HTTP, and the recorded-file form.

A local HTTP stand-in (tests/gitops/github_stand_in.py) answers with what GitHub's
`GET /repos/{owner}/{repo}/commits/{ref}/statuses` returns (recorded shapes); the client under
test is ours, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitops.errors import GitOpsError
from gitops.statuses import GitHubStatuses, RecordedStatuses, latest
from tests.gitops.github_stand_in import GitHubStandIn, serving

SHA = "0123456789abcdef0123456789abcdef01234567"


def github_status(context: str, state: str, created_at: str) -> dict[str, Any]:
    return {
        "url": f"https://api.github.com/repos/o/r/statuses/{SHA}",
        "id": 1,
        "state": state,
        "description": f"{context} {state}",
        "target_url": "https://argocd.example.com/applications/argocd/iris-staging",
        "context": context,
        "created_at": created_at,
        "updated_at": created_at,
        "creator": {"login": "iris-gitops[bot]"},
    }


@pytest.fixture
def github() -> Iterator[GitHubStandIn]:
    with serving(GitHubStandIn("owner/iris-gitops")) as stand_in:
        yield stand_in


FIRST = f"/repos/owner/iris-gitops/commits/{SHA}/statuses?per_page=100"


def test_statuses_are_read_across_pages_with_the_token(github: GitHubStandIn) -> None:
    second = f"/repos/owner/iris-gitops/commits/{SHA}/statuses?per_page=100&page=2"
    github.page(
        FIRST,
        [github_status("argocd/iris-staging", "failure", "2026-12-01T10:30:00Z")],
        Link=f'<{github.url}{second}>; rel="next", <{github.url}{second}>; rel="last"',
    )
    github.page(second, [github_status("argocd/iris-staging", "success", "2026-12-01T10:00:00Z")])
    client = GitHubStatuses("owner/iris-gitops", "t0ken", github.url)
    found = client.statuses(SHA)
    assert [s.state for s in found] == ["failure", "success"]
    newest = latest(found, "argocd/iris-staging")
    assert newest is not None
    assert newest.state == "failure"
    assert newest.created_at == datetime(2026, 12, 1, 10, 30, tzinfo=UTC)
    assert [(r.path, r.query.get("page")) for r in github.requests] == [
        (FIRST.split("?")[0], None),
        (FIRST.split("?")[0], "2"),
    ]
    headers = github.requests[0].headers
    assert headers["Authorization"] == "Bearer t0ken"
    assert headers["Accept"] == "application/vnd.github+json"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (401, {"message": "Bad credentials"}, "GitHub answered 401"),
        (200, b"<html>not json</html>", "is not JSON"),
        (200, {"message": "not a list"}, "no list of statuses"),
        (200, [{"context": "argocd/iris-staging"}], "lacks context, state or created_at"),
    ],
)
def test_a_bad_answer_is_one_clear_error(
    github: GitHubStandIn, status: int, body: Any, message: str
) -> None:
    github.page(FIRST, body, status=status)
    with pytest.raises(GitOpsError, match=message):
        GitHubStatuses("owner/iris-gitops", None, github.url).statuses(SHA)


def test_an_unreachable_api_is_one_clear_error() -> None:
    client = GitHubStatuses("owner/iris-gitops", None, "http://127.0.0.1:9")
    with pytest.raises(GitOpsError, match=r"cannot reach GitHub at http://127\.0\.0\.1:9"):
        client.statuses(SHA)


def test_the_repository_must_be_owner_slash_name() -> None:
    with pytest.raises(GitOpsError, match="is not <owner>/<name>"):
        GitHubStatuses("https://github.com/owner/iris-gitops", None)


def test_a_recorded_file_answers_like_the_api(tmp_path: Path) -> None:
    path = tmp_path / "statuses.json"
    path.write_text(
        json.dumps(
            {SHA: [github_status("argocd/iris-staging", "success", "2026-12-01T10:00:00+00:00")]}
        )
    )
    found = RecordedStatuses(path).statuses(SHA)
    assert [(s.context, s.state) for s in found] == [("argocd/iris-staging", "success")]
    assert RecordedStatuses(path).statuses("f" * 40) == []
    path.write_text(json.dumps([]))
    with pytest.raises(GitOpsError, match="expected an object of commit -> list of statuses"):
        RecordedStatuses(path)
