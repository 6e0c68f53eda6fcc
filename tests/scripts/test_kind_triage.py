"""scripts/kind/triage.py: what the kind scripts say while they wait, from kubectl's JSON.

The documents are shaped like `kubectl get -o json` output of Kubernetes 1.35 and Argo CD
v3.5.1 (field names as in their API references); each test states the situation it models.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.scripts.support import REPO_ROOT

TRIAGE = REPO_ROOT / "scripts" / "kind" / "triage.py"


def load_triage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kind_triage", TRIAGE)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


triage = load_triage()


def pod(name: str, **status: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": name}, "status": status}


def pods(*items: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "List", "items": list(items)}


def waiting(reason: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": "api", "state": {"waiting": {"reason": reason, "message": message}}, **extra}


def test_an_unschedulable_pod_names_the_shortage_and_the_fix() -> None:
    pending = pod(
        "iris-api-7d9-abcde",
        phase="Pending",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu.",
            }
        ],
    )
    (line,) = triage.pod_problems(pods(pending))
    assert line.startswith("pod/iris-api-7d9-abcde: cannot be scheduled: 0/1 nodes are available")
    assert "give Docker at least 2 CPUs" in line
    assert "scripts/kind/sizing" in line


def test_an_image_that_cannot_be_pulled_names_the_image_and_the_mirror() -> None:
    image = "local-docker.pkg.dev/iris-kind/iris/iris-api:sha-0123@sha256:" + "ab" * 32
    failing = pod(
        "iris-api-1",
        containerStatuses=[waiting("ImagePullBackOff", "Back-off pulling image", image=image)],
    )
    (line,) = triage.pod_problems(pods(failing))
    assert f"ImagePullBackOff for {image}" in line
    assert "docker network inspect kind" in line


def test_a_crash_loop_points_at_the_previous_log_and_stays_the_same_line() -> None:
    first = pod("p", containerStatuses=[waiting("CrashLoopBackOff", restartCount=3)])
    later = pod("p", containerStatuses=[waiting("CrashLoopBackOff", restartCount=4)])
    assert triage.pod_problems(pods(first)) == triage.pod_problems(pods(later))
    assert "kubectl logs p -c api --previous" in triage.pod_problems(pods(first))[0]


def test_healthy_and_starting_pods_are_no_problem() -> None:
    running = pod(
        "a",
        phase="Running",
        conditions=[{"type": "PodScheduled", "status": "True"}],
        containerStatuses=[{"name": "api", "state": {"running": {}}}],
    )
    creating = pod("b", containerStatuses=[waiting("ContainerCreating")])
    assert triage.pod_problems(pods(running, creating)) == []


def application(**status: Any) -> dict[str, Any]:
    return {"kind": "Application", "metadata": {"name": "iris-staging"}, "status": status}


def test_application_error_conditions_and_a_failed_sync_are_problems() -> None:
    app = application(
        conditions=[
            {"type": "ComparisonError", "message": "rpc error: kustomize build failed"},
            {"type": "SharedResourceWarning", "message": "not an error"},
        ],
        operationState={"phase": "Failed", "message": "one or more objects failed to apply"},
    )
    assert triage.application_errors(app) == [
        "application iris-staging: ComparisonError: rpc error: kustomize build failed",
        "application iris-staging: last sync Failed: one or more objects failed to apply",
    ]


def test_an_application_summary_lists_what_is_out_of_sync() -> None:
    app = application(
        sync={"status": "OutOfSync", "revision": "0123456789abcdef"},
        health={"status": "Progressing"},
        resources=[
            {
                "kind": "Deployment",
                "name": "iris-api",
                "namespace": "iris-staging",
                "status": "Synced",
            },
            {
                "kind": "Service",
                "name": "iris-api",
                "namespace": "iris-staging",
                "status": "OutOfSync",
            },
        ],
    )
    lines = triage.application_summary(app)
    assert lines[0] == (
        "application iris-staging: sync OutOfSync, health Progressing, revision 0123456789ab"
    )
    assert lines[1:] == ["  Service/iris-api in iris-staging: OutOfSync"]


def run_cli(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TRIAGE), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_command_line_reads_kubectl_json_from_stdin() -> None:
    stuck = pods(pod("p", containerStatuses=[waiting("ErrImagePull", "not found", image="x")]))
    result = run_cli("pods", stdin=json.dumps(stuck))
    assert result.returncode == 0
    assert result.stdout.startswith("pod/p container api: ErrImagePull for x: not found")


@pytest.mark.parametrize(("args", "stdin"), [(["nodes"], "{}"), (["pods"], "not json")])
def test_the_command_line_refuses_bad_input_in_one_line(args: list[str], stdin: str) -> None:
    result = run_cli(*args, stdin=stdin)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
