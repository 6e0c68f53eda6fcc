"""`python -m gitops bump` and the write-back under it, on real git repositories.

A bare repository plays GitHub. Image tags name real commits of it, as the release's
`sha-<commit>` tags do, so the ordering guard and the code-commit listing see real history.
"""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops.errors import GitOpsError
from gitops.github import repository_of_remote
from gitops.repo import Repo
from gitops.writeback import Proposal, WriteBack, auth_env, write_back
from harness.git import clone, git, init_origin
from tests.gitops.github_stand_in import GitHubStandIn, serving
from tests.gitops.support import (
    HOST,
    deployed_image,
    gitops,
    overlay,
    ref,
)

pytestmark = pytest.mark.integration

# Not a real token: the shape of an installation token.
TOKEN = "ghs_0123456789abcdefTESTTOKEN"  # noqa: S105
EXPIRED = "ghs_expired0123456789abcdef"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return init_origin(tmp_path)


def code_commit(origin: Path, tmp_path: Path, name: str) -> str:
    """Push a commit that changes code (not deploy/) and return its full sha."""
    work = tmp_path / f"dev-{name}"
    if not work.exists():
        clone(origin, work)
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    (work / "service").mkdir(exist_ok=True)
    (work / "service" / f"{name}.py").write_text(f"# {name}\n")
    git(work, "add", "service")
    git(work, "commit", "-q", "-m", f"service: {name}")
    git(work, "push", "-q", "origin", "main")
    return git(work, "rev-parse", "HEAD")


def image_of(commit: str) -> str:
    """The reference the release pushes for `commit`: tag sha-<12 hex>, a digest of its own."""
    digest = hashlib.sha256(f"image of {commit}".encode()).hexdigest()
    return f"{HOST}:sha-{commit[:12]}@sha256:{digest}"


# What a bump commits: the image entry and its release record, nothing else.
RELEASE_FILES = "deploy/release/kustomization.yaml\ndeploy/release/release.yaml"


def bump(repo: Path, reference: str, *args: str, **env: str) -> tuple[int, str, str]:
    """`python -m gitops bump staging`, as release.yml runs it, without sleeping on retries."""
    result = gitops(repo, "bump", "staging", reference, *args, GITOPS_RETRY_DELAY="0", **env)
    return result.returncode, result.stdout, result.stderr


def tip(origin: Path, branch: str = "main") -> str:
    return git(origin, "rev-parse", branch)


def test_bump_pushes_only_the_overlay_and_fast_forwards_the_clone(
    origin: Path, tmp_path: Path
) -> None:
    release = clone(origin, tmp_path / "release")
    code, out, err = bump(release, ref(1))
    assert code == 0, err
    pushed = tip(origin)
    assert f"pushed {pushed} to origin/main (attempt 1)" in out
    assert git(origin, "show", "--name-only", "--format=", "main") == RELEASE_FILES
    assert git(release, "rev-parse", "HEAD") == pushed
    assert deployed_image(clone(origin, tmp_path / "argo"), "staging") == ref(1)
    # The scratch worktree is gone again.
    assert git(release, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_bump_leaves_uncommitted_work_in_the_clone_alone(origin: Path, tmp_path: Path) -> None:
    release = clone(origin, tmp_path / "release")
    path = overlay(release, "production")
    path.write_text(path.read_text() + "# local edit\n")
    code, _, err = bump(release, ref(1))
    assert code == 0, err
    # The edit happened on the newest main in a scratch worktree, not in this checkout.
    assert path.read_text().endswith("# local edit\n")
    assert (
        git(release, "status", "--porcelain") == "M deploy/overlays/production/kustomization.yaml"
    )
    assert git(origin, "show", "--name-only", "--format=", "main") == RELEASE_FILES


def test_a_rerun_of_an_old_release_cannot_move_staging_back(origin: Path, tmp_path: Path) -> None:
    old = code_commit(origin, tmp_path, "old")
    new = code_commit(origin, tmp_path, "new")
    release = clone(origin, tmp_path / "release")
    assert bump(release, image_of(new))[0] == 0
    before = tip(origin)

    # The release run of the older commit, re-run after the newer one shipped.
    code, _, err = bump(release, image_of(old))
    assert code == 2
    assert f"staging runs sha-{new[:12]}, built from a newer commit than sha-{old[:12]}" in err
    assert "nothing was committed or pushed" in err
    assert tip(origin) == before

    # Going back on purpose is possible, and says so in the history.
    code, _, err = bump(release, image_of(old), "--force")
    assert code == 0, err
    assert deployed_image(clone(origin, tmp_path / "argo"), "staging") == image_of(old)


def test_a_newer_image_and_an_image_of_unknown_commit_are_both_bumped(
    origin: Path, tmp_path: Path
) -> None:
    old = code_commit(origin, tmp_path, "old")
    new = code_commit(origin, tmp_path, "new")
    release = clone(origin, tmp_path / "release")
    assert bump(release, image_of(old))[0] == 0
    assert bump(release, image_of(new))[0] == 0
    # A tag naming no commit of this history cannot be ordered: bumped, with a warning.
    code, _, err = bump(release, ref(7))
    assert code == 0, err
    assert "cannot tell whether" in err


def test_a_held_environment_is_not_bumped_until_the_hold_is_lifted(
    origin: Path, tmp_path: Path
) -> None:
    dev = clone(origin, tmp_path / "dev")
    held = gitops(dev, "hold", "staging", "--reason", "rolled back: 500s on /predict")
    assert held.returncode == 0, held.stderr
    assert (dev / "deploy/overlays/staging/HOLD").is_file()
    # The hold changes nothing that Argo CD renders.
    assert deployed_image(dev, "staging").endswith("@sha256:" + "0" * 64)
    git(dev, "add", "deploy")
    git(dev, "commit", "-q", "-m", "Hold staging")
    git(dev, "push", "-q", "origin", "main")
    before = tip(origin)

    release = clone(origin, tmp_path / "release")
    code, _, err = bump(release, ref(1))
    assert code == 3
    assert "staging is on hold (rolled back: 500s on /predict" in err
    assert tip(origin) == before

    lifted = gitops(dev, "release", "staging")
    assert lifted.returncode == 0, lifted.stderr
    assert "hold lifted (rolled back: 500s on /predict)" in lifted.stdout
    git(dev, "commit", "-q", "-am", "Release staging")
    git(dev, "push", "-q", "origin", "main")
    code, _, err = bump(release, ref(1))
    assert code == 0, err


def test_a_hold_that_lands_while_the_image_builds_is_honoured(origin: Path, tmp_path: Path) -> None:
    # The release job's checkout predates the hold; the write-back reads the newest main.
    release = clone(origin, tmp_path / "release")
    dev = clone(origin, tmp_path / "dev")
    assert gitops(dev, "hold", "staging", "--reason", "incident 42").returncode == 0
    git(dev, "add", "deploy")
    git(dev, "commit", "-q", "-m", "Hold staging")
    git(dev, "push", "-q", "origin", "main")
    code, _, err = bump(release, ref(1))
    assert code == 3, err


def test_hold_needs_a_reason_and_release_of_an_unheld_environment_is_a_no_op(
    repo: Path,
) -> None:
    empty = gitops(repo, "hold", "staging", "--reason", "   ")
    assert empty.returncode == 2
    assert empty.stderr.startswith("gitops: error: --reason must say why")
    assert not (repo / "deploy/overlays/staging/HOLD").exists()
    released = gitops(repo, "release", "staging")
    assert released.returncode == 0
    assert "not on hold" in released.stdout


def test_history_never_offers_to_revert_to_the_placeholder(origin: Path, tmp_path: Path) -> None:
    release = clone(origin, tmp_path / "release")
    assert bump(release, ref(1))[0] == 0
    report = json.loads(gitops(release, "history", "staging", "--json").stdout)
    assert report["changes"][0]["after"]["reference"] == ref(1)
    # Reverting the first release would deploy the all-zero digest nobody can pull.
    assert report["revert"] is None
    text = gitops(release, "history", "staging").stdout
    assert "git revert" not in text
    assert "the overlay held the placeholder" in text

    assert bump(release, ref(2))[0] == 0
    report = json.loads(gitops(release, "history", "staging", "--json").stdout)
    assert report["revert"] == f"git revert {tip(origin)}"


def test_history_after_a_rollback_names_the_code_it_took_out_and_suggests_a_hold(
    origin: Path, tmp_path: Path
) -> None:
    first = code_commit(origin, tmp_path, "first")
    broken = code_commit(origin, tmp_path, "broken")
    release = clone(origin, tmp_path / "release")
    assert bump(release, image_of(first))[0] == 0
    assert bump(release, image_of(broken))[0] == 0

    report = json.loads(gitops(release, "history", "staging", "--json").stdout)
    assert report["code_commits"]["direction"] == "brought"
    assert report["code_commits"]["commits"] == [{"commit": broken, "subject": "service: broken"}]

    git(release, *report["revert"].split()[1:], "--no-edit")
    text = gitops(release, "history", "staging").stdout
    assert "code commits the newest change rolled back" in text
    assert f"{broken[:12]}  service: broken" in text
    assert "python -m gitops hold staging --reason" in text
    # The revert of the revert is offered, and it would bring the broken image back.
    assert f"git revert {git(release, 'rev-parse', 'HEAD')}" in text


def test_the_token_reaches_the_push_only(origin: Path, tmp_path: Path) -> None:
    release = clone(origin, tmp_path / "release")
    seen = tmp_path / "seen"
    seen.mkdir()
    # The push: a pre-push hook reads the header git was given.
    hook = release / ".git" / "hooks" / "pre-push"
    hook.write_text(
        "#!/bin/sh\n"
        f'git config --get http.extraheader > "{seen}/push" || true\n'
        f'env > "{seen}/push-env"\n'
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    # The render: kustomize through a wrapper that records its environment.
    wrapper = tmp_path / "kustomize-recording"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'env > "{seen}/render-env"\n'
        f'git config --get http.extraheader > "{seen}/render" || true\n'
        'exec kubectl kustomize "$@"\n'
    )
    wrapper.chmod(0o755)

    code, _, err = bump(release, ref(1), GITOPS_TOKEN=TOKEN, GITOPS_KUSTOMIZE=str(wrapper))
    assert code == 0, err
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert (seen / "push").read_text().strip() == f"AUTHORIZATION: basic {basic}"
    assert (seen / "render").read_text() == ""
    assert TOKEN not in (seen / "render-env").read_text()
    assert "GITOPS_TOKEN" not in (seen / "push-env").read_text()
    # Nothing was written to the clone's configuration.
    assert TOKEN not in (release / ".git" / "config").read_text()
    assert basic not in (release / ".git" / "config").read_text()


def test_auth_env_extends_existing_git_config_variables() -> None:
    env = auth_env("t", {"GIT_CONFIG_COUNT": "2"})
    assert env["GIT_CONFIG_COUNT"] == "3"
    assert env["GIT_CONFIG_KEY_2"] == "http.extraheader"
    assert auth_env(None) == {}


@pytest.fixture
def github(origin: Path) -> Iterator[GitHubStandIn]:
    """The GitHub API stand-in for `origin`, accepting only the App's token."""
    with serving(GitHubStandIn(origin=origin)) as stand_in:
        stand_in.token = TOKEN
        yield stand_in


def api_env(github: GitHubStandIn) -> dict[str, str]:
    """What the workflow's environment tells the tool about GitHub."""
    return {"GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": github.repository}


def test_pull_request_mode_pushes_a_branch_and_opens_one_pull_request(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    release = clone(origin, tmp_path / "release")
    before = tip(origin)

    code, out, err = bump(
        release, ref(1), "--pull-request", "--auto-merge", GITOPS_TOKEN=TOKEN, **api_env(github)
    )
    assert code == 0, err
    assert "https://github.com/owner/iris-gitops/pull/1" in out
    assert tip(origin) == before  # main moves only when the pull request merges
    branch = f"bump/staging/{ref(1).split('@')[0].rsplit(':', 1)[1]}"
    assert git(origin, "show", "--name-only", "--format=", branch) == RELEASE_FILES
    pulls = "/repos/owner/iris-gitops/pulls"
    assert github.calls() == [("GET", pulls), ("POST", pulls), ("POST", "/graphql")]
    listed, created, _ = github.requests
    assert listed.query == {
        "state": "open",
        "head": f"owner:{branch}",
        "base": "main",
        "per_page": "100",
    }
    assert created.body["head"] == branch
    assert created.body["base"] == "main"
    assert created.body["title"] == git(origin, "log", "-1", "--format=%s", branch)
    assert github.auto_merged == ["https://github.com/owner/iris-gitops/pull/1"]
    assert {r.headers["Authorization"] for r in github.requests} == {f"Bearer {TOKEN}"}


def test_pull_request_mode_updates_the_open_pull_request_instead_of_opening_another(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    release = clone(origin, tmp_path / "release")
    first = bump(release, ref(1), "--pull-request", GITOPS_TOKEN=TOKEN, **api_env(github))
    assert first[0] == 0, first[2]
    # The same image again (a re-run): the branch is pushed again, the pull request updated.
    code, out, err = bump(release, ref(1), "--pull-request", GITOPS_TOKEN=TOKEN, **api_env(github))
    assert code == 0, err
    assert "pull/1" in out
    assert "updated the open pull request" in err
    pulls = "/repos/owner/iris-gitops/pulls"
    assert [call[0] for call in github.calls()] == ["GET", "POST", "GET", "PATCH"]
    assert github.calls()[-1] == ("PATCH", f"{pulls}/1")
    assert list(github.pulls) == [1]


def test_a_token_github_refuses_pushes_no_branch_and_says_so_in_one_line(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    release = clone(origin, tmp_path / "release")
    code, _, err = bump(release, ref(1), "--pull-request", GITOPS_TOKEN=EXPIRED, **api_env(github))
    assert code == 2
    (line,) = err.splitlines()
    assert line.startswith("gitops: error: GitHub answered 401 for GET /repos/owner/iris-gitops/")
    assert "Bad credentials" in line
    assert line.endswith("nothing was committed or pushed")
    assert EXPIRED not in err
    assert git(origin, "branch", "--list", "bump/*") == ""
    assert git(release, "status", "--porcelain") == ""


def test_a_refused_pull_request_after_the_push_says_what_was_pushed(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    release = clone(origin, tmp_path / "release")
    refused = {"message": "Resource not accessible by integration"}
    github.fail("POST", "/repos/owner/iris-gitops/pulls", 403, refused)
    code, _, err = bump(release, ref(1), "--pull-request", GITOPS_TOKEN=TOKEN, **api_env(github))
    assert code == 2
    (line,) = err.splitlines()[-1:]
    assert "GitHub answered 403 for POST /repos/owner/iris-gitops/pulls" in line
    assert "Resource not accessible by integration" in line
    assert "Pull requests: write" in line
    assert "is pushed but main is unchanged" in line
    assert "nothing was committed or pushed" not in line
    # Running it again opens the pull request for the branch already there.
    code, out, err = bump(release, ref(1), "--pull-request", GITOPS_TOKEN=TOKEN, **api_env(github))
    assert code == 0, err
    assert "pull/1" in out


def test_pull_request_mode_needs_a_repository_and_a_token_before_it_pushes(
    origin: Path, tmp_path: Path, github: GitHubStandIn
) -> None:
    release = clone(origin, tmp_path / "release")
    env = api_env(github)
    del env["GITHUB_REPOSITORY"]
    code, _, err = bump(release, ref(1), "--pull-request", GITOPS_TOKEN=TOKEN, **env)
    assert code == 2
    assert "set GITHUB_REPOSITORY=<owner>/<name>" in err
    code, _, err = bump(release, ref(1), "--pull-request", **api_env(github))
    assert code == 2
    assert "a pull request needs a GitHub token: set GITOPS_TOKEN" in err
    assert github.requests == []
    assert git(origin, "branch", "--list", "bump/*") == ""


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://github.com/owner/iris-gitops.git", "owner/iris-gitops"),
        ("https://github.com/owner/iris-gitops", "owner/iris-gitops"),
        ("git@github.com:owner/iris-gitops.git", "owner/iris-gitops"),
        ("ssh://git@github.com/owner/iris.gitops.git", "owner/iris.gitops"),
        ("https://gitlab.com/owner/iris-gitops.git", None),
        ("/srv/git/iris-gitops.git", None),
    ],
)
def test_the_repository_is_read_from_a_github_remote(url: str, slug: str | None) -> None:
    assert repository_of_remote(url) == slug


def test_write_back_refuses_an_edit_that_stages_files_it_did_not_name(
    origin: Path, tmp_path: Path
) -> None:
    release = clone(origin, tmp_path / "release")
    before = tip(origin)

    def sneaky(work: Repo) -> Proposal:
        (work.root / "deploy" / "extra.yaml").write_text("kind: ConfigMap\n")
        path = work.root / "deploy/overlays/staging/kustomization.yaml"
        path.write_text(path.read_text() + "# edited\n")
        work.git("add", "deploy/extra.yaml")
        return Proposal(("deploy/overlays/staging/kustomization.yaml",), "edit")

    with pytest.raises(GitOpsError, match=r"staged files it did not name: deploy/extra\.yaml"):
        write_back(Repo.open(release), sneaky, WriteBack(retry_delay_s=0), log=print)
    assert tip(origin) == before
