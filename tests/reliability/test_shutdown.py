"""Scenario 2, short: SIGTERM under load, and the Deployment's shutdown budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.serving import graceful_shutdown, shutdown_budget
from tests.reliability.support import explain


@pytest.mark.integration
def test_sigterm_under_load_drains_with_readiness_503_and_exits_0(
    trained_artifact_dir: Path, tmp_path: Path
) -> None:
    outcome = graceful_shutdown(
        trained_artifact_dir,
        tmp_path,
        connections=16,
        load_before_s=1.5,
        drain_s=1.0,
        graceful_timeout_s=20,
    )
    assert outcome.ok, explain(outcome)


def test_deployment_gives_prestop_drain_and_graceful_timeout_time_to_finish(
    repo_root: Path,
) -> None:
    """The kubelet SIGKILLs the pod terminationGracePeriodSeconds after deletion, counting
    the preStop hook. preStop (endpoints removed everywhere), then the service's drain and
    gunicorn's graceful timeout (in-flight requests finish) must fit inside it, with a
    margin for the process to exit."""
    budget = shutdown_budget(repo_root / "deploy/base/deployment.yaml")
    assert budget["pre_stop_s"] > 0, "no preStop delay: the pod stops before it leaves the LB"
    used = budget["pre_stop_s"] + budget["drain_s"] + budget["graceful_timeout_s"]
    assert used < budget["grace_period_s"], budget
