"""Scenario 5, short: malformed and huge bodies, a swarm of tiny requests, slow bodies."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.hostile import hostile_input
from tests.reliability.support import explain

pytestmark = pytest.mark.integration


def test_hostile_input_gets_4xx_and_never_kills_a_worker(
    trained_artifact_dir: Path, tmp_path: Path
) -> None:
    outcome = hostile_input(
        trained_artifact_dir,
        tmp_path,
        schemathesis_examples=0,  # tests/service runs schemathesis; make reliability runs more
        swarm_requests=1000,
        swarm_concurrency=200,
        slow_connections=5,
        slow_trickle_s=4,
        rss_bound_mib=32,
    )
    assert outcome.ok, explain(outcome)
