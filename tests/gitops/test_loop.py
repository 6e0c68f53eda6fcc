"""The whole GitOps loop on real git and real kustomize, without a cluster.

A bare repository plays GitHub; clones play the release job, a developer and Argo CD (which
only ever fetches main and renders an overlay). The release job's own script does the bumps.
"""

from __future__ import annotations

import itertools
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.git import clone, git, init_origin
from tests.gitops.support import (
    BUMP_SCRIPT,
    bump,
    deployed_image,
    gitops,
    overlay,
    ref,
    release_file,
    start_bump,
)

pytestmark = pytest.mark.integration

BOT = "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return init_origin(tmp_path)


def tag_of(reference: str) -> str:
    return reference.split("@")[0].rsplit(":", 1)[1]


def log(origin: Path, fmt: str = "%s") -> list[str]:
    return git(origin, "log", f"--format={fmt}", "main").splitlines()


def argo_sees(origin: Path, tmp_path: Path, name: str) -> Path:
    """What Argo CD would render: a fresh fetch of main."""
    return clone(origin, tmp_path / name)


def test_release_bumps_staging_and_production_changes_only_by_a_merged_promotion(
    origin: Path, tmp_path: Path
) -> None:
    release = clone(origin, tmp_path / "release")
    first = bump(release, ref(1))
    assert first.returncode == 0, first.stderr
    # The second form the workflow may use: name@digest and the tag apart.
    name_tag, digest = ref(2).split("@")
    second = bump(release, f"{name_tag.rsplit(':', 1)[0]}@{digest}", tag_of(ref(2)))
    assert second.returncode == 0, second.stderr

    argo = argo_sees(origin, tmp_path, "argo")
    assert deployed_image(argo, "staging") == ref(2)
    assert deployed_image(argo, "production").endswith("@sha256:" + "0" * 64)
    assert log(origin)[:2] == [
        f"deploy(staging): iris-api {tag_of(ref(2))}",
        f"deploy(staging): iris-api {tag_of(ref(1))}",
    ]
    assert log(origin, "%an <%ae>")[:2] == [BOT, BOT]
    assert f"Image: {ref(2)}" in git(origin, "log", "-1", "--format=%b", "main")

    # Argo CD Notifications reported staging healthy on the bump an hour ago (the statuses
    # GitHub would return, recorded)...
    verified = git(origin, "rev-parse", "main")
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    statuses = tmp_path / "statuses.json"
    statuses.write_text(
        json.dumps(
            {
                verified: [
                    {
                        "context": "argocd/iris-staging",
                        "state": "success",
                        "created_at": an_hour_ago,
                        "description": "synced and healthy",
                    }
                ]
            }
        )
    )
    # ...so a developer runs the promotion (what the promotion workflow does) on a branch...
    dev = clone(origin, tmp_path / "dev")
    git(dev, "switch", "-q", "-c", "promote/staging-to-production")
    promoted = gitops(dev, "promote", "staging", "production", "--statuses-file", str(statuses))
    assert promoted.returncode == 0, promoted.stderr
    git(dev, "commit", "-q", "-am", f"deploy(production): promote iris-api {tag_of(ref(2))}")
    git(dev, "push", "-q", "origin", "promote/staging-to-production")
    # ...another release lands on main while the pull request waits for review...
    third = bump(release, ref(3))
    assert third.returncode == 0, third.stderr
    # ...and production changes only when the pull request is merged.
    assert deployed_image(argo_sees(origin, tmp_path, "argo-before-merge"), "production") == (
        deployed_image(argo, "production")
    )
    git(dev, "switch", "-q", "main")
    git(dev, "pull", "-q", "--ff-only", "origin", "main")
    git(
        dev,
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge pull request from promote/staging-to-production",
        "origin/promote/staging-to-production",
    )
    git(dev, "push", "-q", "origin", "main")

    git(argo, "pull", "-q", "--ff-only")
    assert deployed_image(argo, "production") == ref(2)  # the reviewed digest, not the newest
    assert deployed_image(argo, "staging") == ref(3)

    # Roll staging back with the exact command the tool prints for the newest bump.
    history = json.loads(gitops(dev, "history", "staging", "--json").stdout)
    assert [c["after"]["reference"] for c in history["changes"][:3]] == [ref(3), ref(2), ref(1)]
    revert = history["revert"].split()
    assert revert[:2] == ["git", "revert"]
    git(dev, *revert[1:], "--no-edit")
    git(dev, "push", "-q", "origin", "main")

    git(argo, "pull", "-q", "--ff-only")
    assert deployed_image(argo, "staging") == ref(2)
    assert deployed_image(argo, "production") == ref(2)
    status = json.loads(gitops(argo, "status", "--json").stdout)
    envs = {e["env"]: e for e in status["environments"]}
    assert envs["staging"]["last_change"]["commit"] == git(argo, "rev-parse", "HEAD")
    assert envs["staging"]["last_change"]["subject"].startswith('Revert "deploy(staging)')
    assert envs["production"]["last_change"]["subject"].startswith("deploy(production): promote")


def test_a_release_that_loses_the_push_race_reapplies_its_bump_on_the_new_tip(
    origin: Path, tmp_path: Path
) -> None:
    winner = clone(origin, tmp_path / "winner")
    loser = clone(origin, tmp_path / "loser")
    marker = tmp_path / "winner-ran"
    # The loser's push is held until the winner's whole release job has pushed: both jobs
    # started from the same main, exactly the race two quick merges cause.
    hook = loser / ".git" / "hooks" / "pre-push"
    hook.write_text(
        "#!/bin/sh\n"
        "unset $(git rev-parse --local-env-vars)\n"
        f'if [ ! -e "{marker}" ]; then\n'
        f'  touch "{marker}"\n'
        f'  cd "{winner}" && "{BUMP_SCRIPT}" "{ref(1)}" >"{tmp_path}/winner.log" 2>&1 || exit 1\n'
        "fi\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)

    result = bump(loser, ref(2))
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert "push rejected" in result.stderr
    assert "(attempt 2)" in result.stdout

    subjects = log(origin)
    assert subjects[:3] == [
        f"deploy(staging): iris-api {tag_of(ref(2))}",
        f"deploy(staging): iris-api {tag_of(ref(1))}",
        "Add the Argo CD Applications, production pinned",
    ]
    argo = argo_sees(origin, tmp_path, "argo")
    assert deployed_image(argo, "staging") == ref(2)
    # The loser's clone ends on the pushed commit, nothing left over.
    assert git(loser, "rev-parse", "HEAD") == git(origin, "rev-parse", "main")
    assert git(loser, "status", "--porcelain") == ""


def test_concurrent_releases_all_land_in_history_in_order_with_no_lost_commit(
    origin: Path, tmp_path: Path
) -> None:
    refs = {ref(n): n for n in (11, 12, 13)}
    jobs = [
        start_bump(clone(origin, tmp_path / f"job{n}"), reference, GITOPS_PUSH_ATTEMPTS="10")
        for reference, n in refs.items()
    ]
    for job in jobs:
        out, err = job.communicate(timeout=180)
        assert job.returncode == 0, out + err

    lines = log(origin, "%H %P|%s")
    commits = [line.split("|", 1) for line in lines]
    bumps = commits[:3]
    assert sorted(subject for _, subject in bumps) == sorted(
        f"deploy(staging): iris-api {tag_of(r)}" for r in refs
    )
    # Linear history: every bump sits on the one before it, none was overwritten.
    for (shas, _), (older_shas, _) in itertools.pairwise(commits):
        sha, *parents = shas.split()
        assert parents == [older_shas.split()[0]], sha
    argo = argo_sees(origin, tmp_path, "argo")
    newest_tag = bumps[0][1].rsplit(" ", 1)[1]
    (newest,) = [r for r in refs if tag_of(r) == newest_tag]
    assert deployed_image(argo, "staging") == newest
    history = json.loads(gitops(argo, "history", "staging", "--json").stdout)
    assert [c["subject"] for c in history["changes"][:3]] == [s for _, s in bumps]


def _break_main(origin: Path, tmp_path: Path, old: str, new: str, *, release: bool = False) -> None:
    maintainer = clone(origin, tmp_path / "maintainer")
    path = release_file(maintainer) if release else overlay(maintainer, "staging")
    path.write_text(path.read_text().replace(old, new))
    git(maintainer, "commit", "-q", "-am", "Break the staging overlay")
    git(maintainer, "push", "-q", "origin", "main")


@pytest.mark.parametrize("breakage", ["bad reference", "render failure", "missing images entry"])
def test_a_failing_bump_pushes_nothing_and_leaves_the_clone_as_it_was(
    breakage: str, origin: Path, tmp_path: Path
) -> None:
    reference = ref(1)
    if breakage == "bad reference":
        reference = ref(1).split("@")[0]  # no digest
    elif breakage == "render failure":
        _break_main(origin, tmp_path, "  - ../../base\n", "  - ../../base\n  - missing.yaml\n")
    else:
        _break_main(origin, tmp_path, "name: iris-api", "name: renamed-api", release=True)
    release = clone(origin, tmp_path / "release")
    tip = git(origin, "rev-parse", "main")

    result = bump(release, reference)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nothing was committed or pushed" in result.stderr
    assert git(origin, "rev-parse", "main") == tip
    assert git(origin, "for-each-ref", "--format=%(refname)") == "refs/heads/main"
    assert git(release, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(release, "rev-parse", "HEAD") == tip
    assert git(release, "status", "--porcelain") == ""


def test_bump_reports_to_github_outputs_and_an_identical_rerun_pushes_nothing(
    origin: Path, tmp_path: Path
) -> None:
    release = clone(origin, tmp_path / "release")
    outputs = tmp_path / "github_output"
    outputs.touch()
    assert bump(release, ref(1), GITHUB_OUTPUT=str(outputs)).returncode == 0
    tip = git(origin, "rev-parse", "main")
    assert outputs.read_text() == f"changed=true\ncommit={tip}\n"

    rerun = bump(release, ref(1), GITHUB_OUTPUT=str(outputs))
    assert rerun.returncode == 0, rerun.stderr
    assert "already runs" in rerun.stdout
    assert git(origin, "rev-parse", "main") == tip
    assert outputs.read_text().endswith(f"changed=false\ncommit={tip}\n")


def test_bump_gives_up_after_the_last_attempt(origin: Path, tmp_path: Path) -> None:
    release = clone(origin, tmp_path / "release")
    git(release, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    result = bump(release, ref(1), GITOPS_PUSH_ATTEMPTS="2")
    assert result.returncode == 1
    assert "could not push to origin/main in 2 attempts" in result.stderr
    assert git(release, "status", "--porcelain") == ""
