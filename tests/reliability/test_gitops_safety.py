"""Scenario 6, short: the GitOps tool killed mid-write, run twice at once, fed corrupt files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reliability.gitops_safety import gitops_state_safety
from tests.reliability.support import explain

pytestmark = pytest.mark.integration


@pytest.mark.skipif(
    not (shutil.which("kustomize") or shutil.which("kubectl")),
    reason="the GitOps tool renders overlays with kustomize or kubectl; neither is on PATH",
)
def test_interrupted_concurrent_and_corrupt_runs_never_damage_the_overlay(
    tmp_path: Path,
) -> None:
    outcome = gitops_state_safety(tmp_path, kills=5, concurrent_rounds=1)
    assert outcome.ok, explain(outcome)
