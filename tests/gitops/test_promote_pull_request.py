"""`python -m gitops promote staging production --pull-request`, the one command promote.yml runs.

Real git: a bare repository plays GitHub's git side, clones play the release job and the
workflow's checkout. GitHub's API is a local stand-in (tests/gitops/github_stand_in.py) that
records each request and answers in GitHub's documented shapes; it checks our client and our
write-back logic, not GitHub itself. Statuses, the pull request and its update all go through
it with the App token, as in the workflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from harness.git import clone, git, init_origin
from tests.gitops.github_stand_in import GitHubStandIn, serving
from tests.gitops.support import bump, gitops, ref
from tests.gitops.test_promotion import status

pytestmark = pytest.mark.integration  # real git, real kustomize

TOKEN = "ghs_0123456789abcdefAPPTOKEN"  # noqa: S105 (the shape of an installation token)
PULLS = "/repos/owner/iris-gitops/pulls"
PRODUCTION_APP = "argocd/apps/production.yaml"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return init_origin(tmp_path)


@pytest.fixture
def github(origin: Path) -> Iterator[GitHubStandIn]:
    with serving(GitHubStandIn("owner/iris-gitops", origin)) as stand_in:
        stand_in.token = TOKEN
        yield stand_in


def release(origin: Path, tmp_path: Path, n: int) -> str:
    """Release image n as release.yml does; the bump commit on main."""
    work = clone(origin, tmp_path / f"release-{n}")
    done = bump(work, ref(n))
    assert done.returncode == 0, done.stderr
    return git(work, "rev-parse", "HEAD")


def promote(
    checkout: Path, github: GitHubStandIn, tmp_path: Path, *args: str, **env: str
) -> tuple[int, str, str]:
    """The promote step of promote.yml: its environment, its one command."""
    done = gitops(
        checkout,
        "promote",
        "staging",
        "production",
        "--pull-request",
        *args,
        GITOPS_TOKEN=TOKEN,
        GITHUB_API_URL=github.url,
        GITHUB_REPOSITORY=github.repository,
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
        GITHUB_OUTPUT=str(tmp_path / "output"),
        GITOPS_RETRY_DELAY="0",
        **env,
    )
    return done.returncode, done.stdout, done.stderr


def pin_at(origin: Path, revision: str) -> str:
    text = git(origin, "show", f"{revision}:{PRODUCTION_APP}")
    return str(yaml.safe_load(text)["spec"]["source"]["targetRevision"])


def test_promotion_opens_a_pull_request_from_the_newest_main_with_the_evidence(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    # The workflow's checkout is older than main: the release landed after it.
    checkout = clone(origin, tmp_path / "checkout")
    bump_sha = release(origin, tmp_path, 1)
    github.statuses(bump_sha, [status("success", timedelta(minutes=11))])
    before = pin_at(origin, "main")

    code, out, err = promote(checkout, github, tmp_path)
    assert code == 0, err
    tag = ref(1).split("@")[0].rsplit(":", 1)[1]
    branch = f"promote/production/{tag}"
    # main is untouched; the branch is main's newest tip plus the pin, nothing else.
    assert pin_at(origin, "main") == before
    assert git(origin, "rev-parse", f"{branch}^") == git(origin, "rev-parse", "main")
    assert git(origin, "diff", "--name-only", "main", branch) == PRODUCTION_APP
    assert pin_at(origin, branch) == bump_sha
    # The gate read staging's status, then the pull request was looked for and opened.
    assert github.calls() == [
        ("GET", f"/repos/owner/iris-gitops/commits/{bump_sha}/statuses"),
        ("GET", PULLS),
        ("POST", PULLS),
    ]
    assert {r.headers["Authorization"] for r in github.requests} == {f"Bearer {TOKEN}"}
    created = github.requests[-1].body
    assert created["head"] == branch
    assert created["base"] == "main"
    assert created["title"] == f"deploy(production): promote iris-api {tag} from staging"
    assert f"`argocd/iris-staging` = **success** on `{bump_sha[:12]}`" in created["body"]
    assert f"- **Image:** `{ref(1)}`" in created["body"]
    assert "### Rendered diff of production" in created["body"]
    assert f"+        image: {ref(1)}" in created["body"]
    # The run's outputs and page say the same.
    url = "https://github.com/owner/iris-gitops/pull/1"
    assert url in out
    assert f"pull_request={url}" in (tmp_path / "output").read_text()
    assert (tmp_path / "summary.md").read_text() == created["body"]
    # Nothing in the checkout changed: the work happened on a scratch worktree.
    assert git(checkout, "status", "--porcelain") == ""
    assert TOKEN not in (checkout / ".git" / "config").read_text()


def test_running_it_again_updates_the_same_pull_request(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    checkout = clone(origin, tmp_path / "checkout")
    bump_sha = release(origin, tmp_path, 1)
    github.statuses(bump_sha, [status("success", timedelta(minutes=11))])
    assert promote(checkout, github, tmp_path)[0] == 0
    github.statuses(bump_sha, [status("success", timedelta(hours=2))])

    code, _, err = promote(checkout, github, tmp_path)
    assert code == 0, err
    assert "updated the open pull request https://github.com/owner/iris-gitops/pull/1" in err
    assert [call for call in github.calls() if call[0] != "GET"] == [
        ("POST", PULLS),
        ("PATCH", f"{PULLS}/1"),
    ]
    assert list(github.pulls) == [1]


def test_a_promotion_the_gate_refuses_pushes_no_branch_and_opens_nothing(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    checkout = clone(origin, tmp_path / "checkout")
    bump_sha = release(origin, tmp_path, 1)
    github.statuses(bump_sha, [status("success", timedelta(minutes=3))])

    code, _, err = promote(checkout, github, tmp_path)
    assert code == 2
    (line,) = err.splitlines()
    assert "healthy for 3m" in line
    assert line.endswith("nothing was committed or pushed")
    assert [method for method, _ in github.calls()] == ["GET"]
    assert git(origin, "branch", "--list", "promote/*") == ""
    assert git(checkout, "status", "--porcelain") == ""
    assert not (tmp_path / "summary.md").exists()


def test_a_forced_promotion_is_loud_and_says_so_in_the_pull_request(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    checkout = clone(origin, tmp_path / "checkout")
    release(origin, tmp_path, 1)  # staging never reported it

    code, out, err = promote(checkout, github, tmp_path, "--force", GITHUB_ACTIONS="true")
    assert code == 0, err
    assert "gitops: WARNING: --force: promoting" in err
    assert "::warning::forced promotion: no argocd/iris-staging status" in out
    body = github.requests[-1].body["body"]
    assert "**Promoted with `--force`.**" in body
    assert "no argocd/iris-staging status" in body


def test_a_token_without_access_to_statuses_fails_in_one_line_before_any_push(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    checkout = clone(origin, tmp_path / "checkout")
    bump_sha = release(origin, tmp_path, 1)
    github.fail(
        "GET",
        f"/repos/owner/iris-gitops/commits/{bump_sha}",
        403,
        {"message": "Resource not accessible by integration"},
    )
    code, _, err = promote(checkout, github, tmp_path)
    assert code == 2
    (line,) = err.splitlines()
    assert "GitHub answered 403 for GET" in line
    assert "Commit statuses: read" in line
    assert TOKEN not in err
    assert git(origin, "branch", "--list", "promote/*") == ""
