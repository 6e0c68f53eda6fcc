"""Scenario 4: a broken artifact stops the process at start, with the artifact's message."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.artifacts import bad_artifacts
from tests.reliability.support import explain

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "kind",
    ["missing model file", "truncated joblib", "another scikit-learn", "wrong feature names"],
)
def test_broken_artifact_exits_non_zero_with_its_message_and_is_never_ready(
    trained_artifact_dir: Path, tmp_path: Path, kind: str
) -> None:
    # Behaviour only: how fast is `make reliability`'s business (a ratio to the raw-ASGI
    # app's cold start in the same run), not a bound that a loaded test machine breaks.
    outcome = bad_artifacts(trained_artifact_dir, tmp_path, kinds=(kind,), exit_ratio=None)
    assert outcome.ok, explain(outcome)
