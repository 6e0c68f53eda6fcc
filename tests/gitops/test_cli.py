"""`python -m gitops` against real git repositories and real kustomize renders."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gitops import files
from gitops.cli import main
from harness.git import git
from tests.gitops.support import (
    REPO_ROOT,
    app_file,
    deployed_image,
    gitops,
    overlay,
    pin_of,
    record_file,
    ref,
    release_file,
    set_pin,
)

pytestmark = pytest.mark.integration  # runs real git and kustomize

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64


def run(capsys: pytest.CaptureFixture[str], repo: Path, *args: str) -> tuple[int, str, str]:
    code = main(["-C", str(repo), *args])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(repo: Path) -> list[str]:
    """Temporary files or scratch overlays a run might have left behind."""
    return sorted(
        p.relative_to(repo).as_posix()
        for p in (repo / "deploy").rglob(".*")
        if p.name != ".gitkeep"
    )


def test_set_image_writes_the_reference_and_the_rendered_deployment_runs_it(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    production = overlay(repo, "production").read_bytes()
    code, out, err = run(capsys, repo, "set-image", "staging", ref(1))
    assert (code, err) == (0, "")
    assert out.startswith(f"staging: set {ref(1)} in deploy/release/kustomization.yaml")
    assert deployed_image(repo, "staging") == ref(1)
    assert overlay(repo, "production").read_bytes() == production
    # Production renders its pinned commit: the new image reaches it only by promotion.
    assert deployed_image(repo, "production").endswith(PLACEHOLDER_DIGEST)
    assert leftovers(repo) == []
    # The file keeps its permissions: the temporary file it replaces it from is 0600.
    assert oct(release_file(repo).stat().st_mode & 0o777) == oct(
        (REPO_ROOT / "deploy/release/kustomization.yaml").stat().st_mode & 0o777
    )


def test_setting_the_same_image_again_changes_nothing(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, repo, "set-image", "staging", ref(1))[0] == 0
    before = release_file(repo).stat().st_mtime_ns
    code, out, _ = run(capsys, repo, "set-image", "staging", ref(1))
    assert code == 0
    assert out == f"staging: already at {ref(1)}; nothing to do\n"
    assert release_file(repo).stat().st_mtime_ns == before


def test_an_overlay_that_cannot_round_trip_exactly_is_still_set_with_a_warning(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = release_file(repo)
    # Aligned values are not something a YAML round trip can reproduce.
    path.write_text(path.read_text().replace("kind: Component", "kind:    Component"))
    code, _, err = run(capsys, repo, "set-image", "staging", ref(1))
    assert code == 0
    assert err.startswith("gitops: warning: deploy/release/kustomization.yaml could not")
    assert deployed_image(repo, "staging") == ref(1)


def _replace(old: str, new: str, *, release: bool = False) -> Callable[[Path], None]:
    def edit(repo: Path) -> None:
        path = release_file(repo) if release else overlay(repo, "staging")
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return edit


def _no_change(repo: Path) -> None:
    del repo


PIN_OTHER_IMAGE = """patches:
  - target:
      kind: Deployment
      name: iris-api
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/image
        value: busybox:1.36
"""

FAILURES: dict[str, tuple[Callable[[Path], None], list[str], str]] = {
    "unknown environment": (
        _no_change,
        ["set-image", "qa", ref(1)],
        "unknown environment 'qa' (known: production, staging)",
    ),
    "mutable tag": (
        _no_change,
        ["set-image", "staging", ref(1).split("@")[0].rsplit(":", 1)[0] + ":latest"],
        "tag 'latest' is mutable",
    ),
    "placeholder digest": (
        _no_change,
        ["set-image", "staging", ref(1).split("@")[0] + "@" + PLACEHOLDER_DIGEST],
        "digest is the all-zero placeholder",
    ),
    "malformed kustomization": (
        _replace("images:", "images: [\n", release=True),
        ["set-image", "staging", ref(1)],
        "deploy/release/kustomization.yaml: malformed kustomization at line",
    ),
    "missing images entry": (
        _replace("name: iris-api", "name: something-else", release=True),
        ["set-image", "staging", ref(1)],
        "deploy/release/kustomization.yaml: images: has no entry with name: iris-api",
    ),
    "render failure": (
        _replace("  - ../../base\n", "  - ../../base\n  - missing.yaml\n"),
        ["set-image", "staging", ref(1)],
        "render of deploy/overlays/staging failed:",
    ),
    "deployment would not run the image": (
        _replace("patches:\n", PIN_OTHER_IMAGE),
        ["set-image", "staging", ref(1)],
        "render of deploy/overlays/staging: no Deployment runs "
        "europe-west1-docker.pkg.dev/iris-demo-123/iris/iris-api",
    ),
    "promote a placeholder": (
        _no_change,
        ["promote", "staging", "production", "--force"],
        "staging has no releasable image to promote at",
    ),
    "promote backwards": (
        _no_change,
        ["promote", "production", "staging", "--force"],
        "production comes after staging (promotion order: staging -> production); promotion "
        "never goes backwards. To undo a promotion, revert it",
    ),
    "set the image of a pinned environment": (
        _no_change,
        ["set-image", "production", ref(1)],
        "production runs the commit argocd/apps/production.yaml pins",
    ),
    "production pinned to a branch": (
        lambda repo: set_pin(repo, "production", "main"),
        ["promote", "staging", "production", "--force"],
        "argocd/apps/production.yaml: targetRevision is 'main'; production must be pinned",
    ),
    "promote to itself": (_no_change, ["promote", "staging", "staging"], "to itself"),
    "history of an unknown environment": (
        _no_change,
        ["history", "dev"],
        "unknown environment 'dev'",
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failure_exits_2_with_one_line_and_leaves_every_file_byte_identical(
    case: str, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prepare, args, message = FAILURES[case]
    prepare(repo)
    files = [overlay(repo, env) for env in ("staging", "production")]
    files += [release_file(repo), record_file(repo), app_file(repo, "production")]
    before = {path: path.read_bytes() for path in files}
    code, out, err = run(capsys, repo, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("gitops: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert {path: path.read_bytes() for path in files} == before
    assert leftovers(repo) == []


def test_outside_a_git_repository_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "not-a-repo"
    shutil.copytree(REPO_ROOT / "deploy", plain / "deploy")
    before = overlay(plain, "staging").read_bytes()
    code, _, err = run(capsys, plain, "set-image", "staging", ref(1))
    assert code == 2
    assert "is not inside a git repository" in err
    assert overlay(plain, "staging").read_bytes() == before


def test_a_write_that_fails_midway_leaves_the_file_and_no_temporary_behind(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = release_file(repo).read_bytes(), record_file(repo).read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    code, out, err = run(capsys, repo, "set-image", "staging", ref(1))
    assert (code, out) == (2, "")
    assert err == "gitops: error: No space left on device\n"
    assert (release_file(repo).read_bytes(), record_file(repo).read_bytes()) == before
    assert leftovers(repo) == []


def test_promote_pins_production_to_the_commit_and_it_renders_staging_s_image(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, repo, "set-image", "staging", ref(1))[0] == 0
    released = _commit(repo, "deploy(staging): release 1")
    code, out, err = run(capsys, repo, "promote", "staging", "production", "--force")
    assert code == 0
    assert "WARNING: --force" in err
    assert out.startswith(f"production: pinned to {released} in argocd/apps/production.yaml")
    assert "now commit and push: git commit -m 'deploy(production): promote" in out
    assert pin_of(repo, "production") == released
    assert deployed_image(repo, "production") == deployed_image(repo, "staging") == ref(1)


def _commit(repo: Path, message: str) -> str:
    git(repo, "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD")


def test_status_reports_each_environment_its_commit_and_the_change_that_set_it(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, repo, "set-image", "staging", ref(1))
    first = _commit(repo, "deploy(staging): first")
    run(capsys, repo, "promote", "staging", "production", "--force")
    promoted = _commit(repo, "deploy(production): promote first")
    run(capsys, repo, "set-image", "staging", ref(2))
    second = _commit(repo, "deploy(staging): second")
    # A commit that touches the release without changing the image is not "the" change.
    path = release_file(repo)
    path.write_text(path.read_text() + "# a trailing note\n")
    head = _commit(repo, "docs: note in the release")
    set_pin(repo, "production", second)  # left uncommitted

    code, out, _ = run(capsys, repo, "status", "--json")
    assert code == 0
    envs = {e["env"]: e for e in json.loads(out)["environments"]}
    staging, production = envs["staging"], envs["production"]
    name_tag, digest = ref(2).split("@")
    tag = name_tag.rsplit(":", 1)[1]
    assert (staging["tag"], staging["digest"], staging["reference"]) == (tag, digest, ref(2))
    assert staging["revision"] == head
    assert staging["last_change"]["commit"] == second
    assert staging["last_change"]["subject"] == "deploy(staging): second"
    assert staging["last_change"]["before"]["reference"] == ref(1)
    assert (staging["placeholder"], staging["uncommitted"]) == (False, False)
    # The working tree's pin is not deployed until committed and pushed: it is flagged.
    assert production["revision"] == second
    assert production["uncommitted"] is True
    assert production["last_change"]["commit"] == promoted
    assert production["last_change"]["pinned_after"] == first

    git(repo, "checkout", "-q", "--", ".")
    code, out, _ = run(capsys, repo, "status")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == [
        "ENV",
        "RUNS",
        "TAG",
        "DIGEST",
        "MODEL",
        "ACCURACY",
        "CHANGED",
        "NOTE",
    ]
    assert rows[0].split()[:4] == ["staging", head[:12], tag, digest[:19] + "..."]
    first_tag = ref(1).split("@")[0].rsplit(":", 1)[1]
    assert rows[1].split()[:3] == ["production", first[:12], first_tag]
    assert "deploy(production): promote first" in rows[1]


def test_status_marks_the_placeholder_as_not_releasable(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, repo, "status", "--json")
    assert code == 0
    envs = json.loads(out)["environments"]
    assert sorted(env["env"] for env in envs) == ["production", "staging"]
    for env in envs:
        assert env["placeholder"] is True
        assert "placeholder" in env["problem"]


def test_history_lists_bumps_newest_first_and_its_revert_restores_the_previous_image(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shas = []
    for n in (1, 2, 3):
        run(capsys, repo, "set-image", "staging", ref(n))
        shas.append(_commit(repo, f"deploy(staging): bump {n}"))
    code, out, _ = run(capsys, repo, "history", "staging", "--json")
    assert code == 0
    report = json.loads(out)
    assert [c["commit"] for c in report["changes"]][:3] == shas[::-1]
    assert [c["after"]["reference"] for c in report["changes"]][:3] == [ref(3), ref(2), ref(1)]
    assert report["revert"] == f"git revert {shas[-1]}"

    code, out, _ = run(capsys, repo, "history", "staging")
    assert f"  git revert {shas[-1]}\n" in out

    git(repo, *report["revert"].split()[1:], "--no-edit")
    assert deployed_image(repo, "staging") == ref(2)
    code, out, _ = run(capsys, repo, "history", "staging", "--json")
    # The revert is itself the newest change; reverting it would bring ref(3) back.
    assert json.loads(out)["changes"][0]["after"]["reference"] == ref(2)


def test_history_of_an_untouched_environment_has_nothing_to_revert(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, repo, "history", "production")
    assert code == 0
    assert "nothing to roll back" in out
    code, out, _ = run(capsys, repo, "history", "production", "--json")
    assert json.loads(out)["revert"] is None


def _hold_lock(repo: Path) -> int:
    fd = os.open(repo / ".git" / "gitops.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_second_run_on_the_same_clone_fails_cleanly_while_the_lock_is_held(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = release_file(repo).read_bytes()
    fd = _hold_lock(repo)
    try:
        code, _, err = run(capsys, repo, "--lock-timeout", "0.2", "set-image", "staging", ref(1))
    finally:
        os.close(fd)
    assert code == 2
    assert "another gitops run holds" in err
    assert release_file(repo).read_bytes() == before


def test_a_second_run_on_the_same_clone_waits_for_the_first(repo: Path) -> None:
    fd = _hold_lock(repo)
    try:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "gitops", "set-image", "staging", ref(1)],
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        assert waiting.poll() is None, waiting.communicate()
        assert ref(1) not in release_file(repo).read_text()
    finally:
        os.close(fd)
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert deployed_image(repo, "staging") == ref(1)


def test_render_command_is_configurable(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPS_KUSTOMIZE", "kubectl kustomize")
    assert gitops(repo, "set-image", "staging", ref(1)).returncode == 0
    monkeypatch.setenv("GITOPS_KUSTOMIZE", "no-such-kustomize build")
    result = gitops(repo, "set-image", "staging", ref(2))
    assert result.returncode == 2
    assert result.stderr == "gitops: error: render failed: no-such-kustomize is not installed\n"
    assert deployed_image(repo, "staging") == ref(1)


def test_usage_errors_exit_2() -> None:
    result = gitops(REPO_ROOT)
    assert result.returncode == 2
    assert "usage: python -m gitops" in result.stderr


def test_the_module_runs_from_any_directory_inside_the_clone(repo: Path) -> None:
    result = gitops(repo / "deploy" / "overlays", "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("ENV")


def test_a_fresh_repository_without_commits_has_no_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "main")
    shutil.copytree(REPO_ROOT / "deploy", fresh / "deploy")
    code, out, _ = run(capsys, fresh, "history", "staging")
    assert code == 0
    assert out == "staging: no commit has set an image yet\n"
