"""`gitops diff`: each environment's rendered change between two commits, on real git."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.git import git
from tests.gitops.support import gitops, ref

pytestmark = pytest.mark.integration  # real git, real kustomize


def commit(repo: Path, message: str) -> str:
    git(repo, "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD")


def test_a_base_change_shows_under_staging_only_and_its_promotion_under_production(
    repo: Path,
) -> None:
    base = git(repo, "rev-parse", "HEAD")
    deployment = repo / "deploy/base/deployment.yaml"
    deployment.write_text(deployment.read_text().replace("path: /livez", "path: /healthz"))
    probe = commit(repo, "probe on /healthz")

    done = gitops(repo, "diff", "--base", base)
    assert done.returncode == 0, done.stderr
    assert f"--- staging@{base[:12]}\n+++ staging@{probe[:12]}\n" in done.stdout
    changed = [line.split() for line in done.stdout.splitlines() if line[:1] in "+-"]
    assert ["-", "path:", "/livez"] in changed
    assert ["+", "path:", "/healthz"] in changed
    assert "# production: no change to the rendered manifests\n" in done.stdout

    assert gitops(repo, "set-image", "staging", ref(1)).returncode == 0
    released = commit(repo, "deploy(staging): release 1")
    assert gitops(repo, "promote", "staging", "production", "--force").returncode == 0
    commit(repo, "deploy(production): promote")

    done = gitops(repo, "diff", "--base", released, "--markdown")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "<!-- gitops-rendered-diff -->"
    assert "- **staging**: no change" in lines
    production = [line for line in lines if line.startswith("- **production**")]
    assert production[0].startswith("- **production**: +")
    assert "<details><summary>production</summary>" in lines
    assert f"+        image: {ref(1)}" in lines
    # The promotion brings the probe change to production together with the image.
    assert ["+", "path:", "/healthz"] in [line.split() for line in lines]


def test_an_unknown_base_is_one_clear_error(repo: Path) -> None:
    done = gitops(repo, "diff", "--base", "no-such-branch")
    assert done.returncode == 2
    assert done.stderr == "gitops: error: 'no-such-branch' is not a commit of this repository\n"
