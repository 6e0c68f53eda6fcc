"""The release cannot start itself: what the write-back really pushes never matches its trigger.

Pushes made with a GitHub App token start workflows (unlike GITHUB_TOKEN's), so the only
thing between the staging bump and an endless release loop is release.yml's push filter. The
files are not listed by hand here: the real `gitops bump`, `hold`, `release` and
`promote --pull-request` run against a bare repository, and whatever their commits change is
put through GitHub's filter semantics (tests/workflows/support.py: push_starts). GitHub's API
for the pull request is the local stand-in of tests/gitops, which checks our client only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from harness.git import clone, git, init_origin
from tests.gitops.github_stand_in import GitHubStandIn, serving
from tests.gitops.support import bump, gitops, ref
from tests.gitops.test_promotion import status
from tests.workflows.support import all_workflows, github_glob_matches, push_starts, workflow

pytestmark = pytest.mark.integration  # real git, real kustomize

TOKEN = "ghs_0123456789abcdefLOOPTOKEN"  # noqa: S105 (the shape of an installation token)
# Workflows whose jobs may write anything: none of them may start on a write-back push.
WRITERS = {"release", "promote"}


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return init_origin(tmp_path)


def changed_by(origin: Path, revision: str) -> list[str]:
    """The files one pushed commit changes, as GitHub lists them for the push event."""
    return git(origin, "show", "--name-only", "--format=", revision).split()


def started(branch: str, files: list[str]) -> set[str]:
    return {wf.name for wf in all_workflows() if push_starts(wf, branch, files)}


def test_the_staging_bump_starts_no_release_but_a_code_change_does(
    origin: Path, tmp_path: Path
) -> None:
    release = clone(origin, tmp_path / "release")
    done = bump(release, ref(1))  # the release job's own command, pushing to main
    assert done.returncode == 0, done.stderr
    files = changed_by(origin, "main")
    assert files == ["deploy/release/kustomization.yaml", "deploy/release/release.yaml"]
    # CI (read-only) checks the bump like any push to main; nothing that writes starts.
    assert started("main", files) == {"ci"}
    assert not push_starts(workflow("release"), "main", files)

    dev = clone(origin, tmp_path / "dev")
    (dev / "service").mkdir()
    (dev / "service" / "app.py").write_text("# a fix\n")
    git(dev, "add", "service")
    git(dev, "commit", "-q", "-m", "service: a fix")
    git(dev, "push", "-q", "origin", "main")
    assert push_starts(workflow("release"), "main", changed_by(origin, "main"))
    # The same code change pushed with a bump in one commit still releases: the filter
    # looks at every file of the push, not only the first.
    assert push_starts(workflow("release"), "main", [*files, "service/app.py"])


def test_a_hold_and_its_release_start_no_release(origin: Path, tmp_path: Path) -> None:
    dev = clone(origin, tmp_path / "dev")
    for command in (["hold", "staging", "--reason", "rolled back"], ["release", "staging"]):
        done = gitops(dev, *command)
        assert done.returncode == 0, done.stderr
        git(dev, "add", "-A", "deploy")
        git(dev, "commit", "-q", "-m", " ".join(command[:2]))
        git(dev, "push", "-q", "origin", "main")
        files = changed_by(origin, "main")
        assert files == ["deploy/overlays/staging/HOLD"]
        assert WRITERS.isdisjoint(started("main", files))


@pytest.fixture
def github(origin: Path) -> Iterator[GitHubStandIn]:
    with serving(GitHubStandIn("owner/iris-gitops", origin)) as stand_in:
        stand_in.token = TOKEN
        yield stand_in


def test_the_promotion_branch_and_its_merge_start_no_release(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    release = clone(origin, tmp_path / "release")
    assert bump(release, ref(1)).returncode == 0
    github.statuses(git(origin, "rev-parse", "main"), [status("success", timedelta(hours=1))])
    checkout = clone(origin, tmp_path / "checkout")
    done = gitops(
        checkout,
        "promote",
        "staging",
        "production",
        "--pull-request",
        GITOPS_TOKEN=TOKEN,
        GITHUB_API_URL=github.url,
        GITHUB_REPOSITORY=github.repository,
    )
    assert done.returncode == 0, done.stderr
    (branch,) = git(
        origin, "for-each-ref", "--format=%(refname:short)", "refs/heads/promote/"
    ).splitlines()
    files = git(origin, "diff", "--name-only", "main", branch).split()
    assert files == ["argocd/apps/production.yaml"]
    # The push of the branch starts nothing on push (its pull request runs the checks).
    assert started(branch, files) == set()
    assert not github_glob_matches("main", branch)

    # Merging it puts the same file on main: CI again, and still no release.
    git(origin, "update-ref", "refs/heads/main", branch)
    assert started("main", changed_by(origin, "main")) == {"ci"}


def test_the_filter_evaluation_follows_github_for_the_cases_the_release_relies_on() -> None:
    release = workflow("release")
    # The branch filter: only main, not a branch whose name merely starts with it.
    assert push_starts(release, "main", ["model/train.py"])
    assert not push_starts(release, "main-backup", ["model/train.py"])
    assert not push_starts(release, "promote/production/sha-1234567", ["model/train.py"])
    # `*` stays within a directory, `**` crosses them; paths are whole-path matches.
    assert github_glob_matches("requirements/*.lock", "requirements/serve.lock")
    assert not github_glob_matches("requirements/*.lock", "requirements/old/serve.lock")
    assert github_glob_matches("model/**", "model/sub/dir/file.py")
    assert not github_glob_matches("Dockerfile", "deploy/Dockerfile")
    # Negation and order: the last pattern that matches decides.
    ignore = {"push": {"branches": ["main"], "paths-ignore": ["deploy/**", "!deploy/x"]}}
    shaped = type(release)("t", release.path, "", {"on": ignore, "jobs": {}})
    assert not push_starts(shaped, "main", ["deploy/release/kustomization.yaml"])
    assert push_starts(shaped, "main", ["deploy/x"])
    # A pattern with a character this matcher does not implement is refused, not guessed.
    with pytest.raises(ValueError, match="no matcher here"):
        github_glob_matches("v[12].lock", "v1.lock")
