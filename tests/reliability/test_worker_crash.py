"""Scenario 3, short: SIGKILL one gunicorn worker under load."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.serving import worker_crash
from tests.reliability.support import explain

pytestmark = pytest.mark.integration


def test_killed_worker_is_replaced_and_only_its_in_flight_requests_fail(
    trained_artifact_dir: Path, tmp_path: Path
) -> None:
    outcome = worker_crash(
        trained_artifact_dir,
        tmp_path,
        connections=16,
        duration_s=6,
        kill_at_s=2,
        recovery_bound_s=8,
    )
    assert outcome.ok, explain(outcome)
