"""scripts/smoke-container.sh against the real service, with `docker` a recording stand-in.

There is no Docker engine here, so CI is where the script meets a real container. These
tests check the script's own logic against the real server (`python -m service`, started
the way the image starts it): what it asks docker to run, that it waits for readiness, and
that each check fails when the thing it guards is wrong. The stand-in reports the process
owners the script asks for; it says nothing about what a real container would report.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.scripts.support import REPO_ROOT

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server_port(
    trained_artifact_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    """The real service, configured as the image configures it, on a free loopback port."""
    port = free_port()
    work = tmp_path_factory.mktemp("smoke-server")
    env = {key: value for key, value in os.environ.items() if not key.startswith("IRIS_")} | {
        "IRIS_HOST": "127.0.0.1",
        "IRIS_PORT": str(port),
        "IRIS_WORKERS": "1",
        "IRIS_MODEL_DIR": str(trained_artifact_dir),
        "IRIS_METRICS_DIR": str(work / "metrics"),
        "IRIS_GIT_REVISION": REVISION,
    }
    log = work / "server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, log.read_text()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2):
                        break
                except (urllib.error.URLError, OSError):
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.1)
            yield port
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


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
    fakes.mkdir()
    (fakes / "docker").write_text(FAKE_DOCKER, encoding="utf-8")
    (fakes / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    log.touch()
    result = subprocess.run(
        ["bash", str(SCRIPT), "iris-api:ci", revision],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}",
            "FAKE_LOG": str(log),
            "FAKE_PORT": str(port),
            "FAKE_USER": user,
            "FAKE_UIDS": uids,
            "SMOKE_READY_TIMEOUT": "20",
        },
    )
    calls = log.read_text(encoding="utf-8").splitlines()
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
