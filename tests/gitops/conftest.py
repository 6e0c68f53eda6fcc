"""Every gitops test runs git with no user or system configuration of this machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.git import init_repo


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's global config (signing, hooks, default branch, identity) must not change
    # what the tests see, and the tests must not depend on it either.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITOPS_KUSTOMIZE", raising=False)
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clone-like working tree on main holding the project's deploy/ as its first commit."""
    return init_repo(tmp_path / "repo")
