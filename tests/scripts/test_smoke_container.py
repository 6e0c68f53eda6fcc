"""scripts/smoke-container.sh against the real service, with `docker` a recording stand-in.

There is no Docker engine here, so CI is where the script meets a real container. These
tests check the script's own logic against the real server (`python -m service`, started
the way the image starts it): what it asks docker to run, that it waits for readiness, and
that each check fails when the thing it guards is wrong. The stand-in reports the process
owners the script asks for; it says nothing about what a real container would report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.servers import start_service
from tests.scripts.support import REPO_ROOT, run_with_stand_ins, write_stand_in

SCRIPT = REPO_ROOT / "scripts" / "smoke-container.sh"
REVISION = "0123456789abcdef0123456789abcdef01234567"
# PID 1 (gunicorn's master) and two workers, each "pid real effective saved fs" as the
# script's /proc reader prints them.
NON_ROOT = "1 10001 10001 10001 10001\n7 10001 10001 10001 10001\n8 10001 10001 10001 10001"

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("smoke-container")]

FAKE_DOCKER = """#!/usr/bin/env bash
# Recording stand-in for docker (tests only).
printf '%s\\n' "$*" >>"$FAKE_LOG"
case "$1" in
  image) printf '%s\\n' "$FAKE_USER" ;;
  run) echo fake-container ;;
  port) echo "0.0.0.0:$FAKE_PORT" ;;
  inspect) echo true ;;
  exec) printf '%s\\n' "$FAKE_UIDS" ;;
  logs | rm) ;;
  *) echo "fake docker: unexpected: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture(scope="module")
def server_port(
    trained_artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """The real service, configured as the image configures it, on a free loopback port."""
    server = start_service(
        trained_artifact_dir,
        tmp_path_factory.mktemp("smoke-server"),
        workers=1,
        git_revision=REVISION,
        # The image leaves the log format to the service, as start_service does not.
        log_format="auto",
    )
    try:
        yield server.port
    finally:
        server.stop()


@dataclass(frozen=True)
class Smoke:
    returncode: int
    stdout: str
    stderr: str
    docker_calls: list[str]


def smoke(
    tmp_path: Path,
    port: int,
    *,
    user: str = "10001:10001",
    uids: str = NON_ROOT,
    revision: str = REVISION,
) -> Smoke:
    fakes = tmp_path / "bin"
    write_stand_in(fakes, "docker", FAKE_DOCKER)
    result, calls = run_with_stand_ins(
        SCRIPT,
        ["iris-api:ci", revision],
        fakes,
        tmp_path / "docker.log",
        env={
            **os.environ,
            "FAKE_PORT": str(port),
            "FAKE_USER": user,
            "FAKE_UIDS": uids,
            "SMOKE_READY_TIMEOUT": "20",
        },
        timeout=120,
    )
    return Smoke(result.returncode, result.stdout, result.stderr, calls)


def test_a_healthy_non_root_server_passes(server_port: int, tmp_path: Path) -> None:
    run = smoke(tmp_path, server_port)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "smoke-container: OK" in run.stdout
    assert "all 3 server processes run as uid 10001" in run.stdout
    assert "bad input -> 4" in run.stdout
    # The container gets what the pod gets, and is removed afterwards.
    (started,) = [call for call in run.docker_calls if call.startswith("run ")]
    for option in ("--read-only", "--tmpfs /tmp", "--cap-drop ALL", "no-new-privileges"):
        assert option in started, started
    assert run.docker_calls[-1] == "rm --force fake-container"


def test_a_worker_running_as_root_fails(server_port: int, tmp_path: Path) -> None:
    run = smoke(tmp_path, server_port, uids=NON_ROOT + "\n9 10001 0 0 10001")
    assert run.returncode == 1
    assert "process 9 runs as uid 0, want 10001" in run.stderr


def test_an_image_without_the_fixed_user_fails_before_it_runs(
    server_port: int, tmp_path: Path
) -> None:
    run = smoke(tmp_path, server_port, user="")
    assert run.returncode == 1
    assert "image user is '', want 10001" in run.stderr
    assert not [call for call in run.docker_calls if call.startswith("run ")]


def test_an_image_that_reports_another_revision_fails(server_port: int, tmp_path: Path) -> None:
    run = smoke(tmp_path, server_port, revision="f" * 40)
    assert run.returncode == 1
    assert "does not name revision" in run.stderr
    # The container's log is printed for the failure, then it is removed.
    assert "logs fake-container" in run.docker_calls
    assert run.docker_calls[-1] == "rm --force fake-container"
