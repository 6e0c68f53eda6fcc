"""Scenario 1, short: five seconds of sustained load on the real service."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.serving import sustained_load
from tests.reliability.support import explain

pytestmark = pytest.mark.integration


def test_five_seconds_of_load_give_only_2xx_and_no_memory_growth(
    trained_artifact_dir: Path, tmp_path: Path
) -> None:
    outcome = sustained_load(
        trained_artifact_dir,
        tmp_path,
        connections=32,
        duration_s=5,
        warmup_s=1.5,
        rss_growth_bound_mib=16,
    )
    assert outcome.ok, explain(outcome)
    assert outcome.requests > 1000, explain(outcome)
