"""scripts/smoke-container.sh against the real service, with `docker` a recording stand-in.

These tests check the script's own logic against the real server (`python -m service`,
started the way the image starts it): what it asks docker to run, that it waits for
readiness, and that each check fails when the thing it guards is wrong. The stand-in
reports what the script's look inside the container would print (process owners,
compilers, importable libraries, venv size); it says nothing about what a real container
holds. tests/deploy/test_image.py runs the script against the real image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from harness.servers import start_service
from tests.scripts.support import REPO_ROOT, run_with_stand_ins, write_stand_in

SCRIPT = REPO_ROOT / "scripts" / "smoke-container.sh"
REVISION = "0123456789abcdef0123456789abcdef01234567"
# PID 1 (gunicorn's master) and two workers, "process pid ppid real effective saved fs
# rss_kb" as the script's look inside prints them, then the venv's size.
NON_ROOT = (
    "process 1 0 10001 10001 10001 10001 138000\n"
    "process 7 1 10001 10001 10001 10001 122880\n"
    "process 8 1 10001 10001 10001 10001 125952"
)
VENV = "venv 180000000"

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("smoke-container")]

FAKE_DOCKER = """#!/usr/bin/env bash
# Recording stand-in for docker (tests only).
printf '%s\\n' "$*" >>"$FAKE_LOG"
case "$1" in
  image) printf '%s %s\\n' 240000000 "$FAKE_USER" ;;
  run) echo fake-container ;;
  port) echo "0.0.0.0:$FAKE_PORT" ;;
  inspect) echo true ;;
  exec) printf '%s\\n' "$FAKE_PROBE" ;;
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
    probe: str = NON_ROOT + "\n" + VENV,
    revision: str = REVISION,
    cold_start_target: int = 40,
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
            "FAKE_PROBE": probe,
            "SMOKE_READY_TIMEOUT": "20",
            "SMOKE_COLD_START_TARGET": str(cold_start_target),
        },
        timeout=120,
    )
    return Smoke(result.returncode, result.stdout, result.stderr, calls)


def test_a_healthy_non_root_server_passes(server_port: int, tmp_path: Path) -> None:
    run = smoke(tmp_path, server_port)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "smoke-container: OK" in run.stdout
    assert "all 3 server processes run as uid 10001" in run.stdout
    for species in ("setosa", "versicolor", "virginica"):
        assert f"POST /predict -> {species}" in run.stdout
    assert "bad input -> 4" in run.stdout
    assert "cold start " in run.stdout
    assert "(target 40s)" in run.stdout
    assert "image 240000000 bytes (240 MB), /opt/venv 180000000 bytes (180 MB)" in run.stdout
    assert "RSS master 134 MiB, workers 120 123 MiB" in run.stdout
    # The container gets what the pod gets, and is removed afterwards.
    (started,) = [call for call in run.docker_calls if call.startswith("run ")]
    for option in (
        "--user 10001:10001",
        "--read-only",
        "--tmpfs /tmp:",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--cpus 0.5",
        "--memory 512m",
    ):
        assert option in started, started
    assert run.docker_calls[-1] == "rm --force fake-container"


def test_the_container_gets_the_deployments_limits_and_no_other_writable_path(
    repo_root: Path,
) -> None:
    deployment = yaml.safe_load((repo_root / "deploy" / "base" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    limits = container["resources"]["limits"]
    text = SCRIPT.read_text(encoding="utf-8")
    assert f'cpus="${{SMOKE_CPUS:-{Decimal(limits["cpu"].removesuffix("m")) / 1000}}}"' in text
    assert f'memory="${{SMOKE_MEMORY:-{limits["memory"].removesuffix("Mi")}m}}"' in text
    # The cold-start target leaves part of the startup probe's budget to spare.
    startup = container["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    target = re.search(r'cold_start_target="\$\{SMOKE_COLD_START_TARGET:-(\d+)\}"', text)
    assert target
    assert 0 < int(target[1]) <= budget * 2 / 3
    # The pod writes only to its emptyDir volumes; the container gets a tmpfs on each.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    empty_dirs = [v["name"] for v in pod["volumes"] if "emptyDir" in v]
    assert sorted(mounts[name] for name in empty_dirs) == ["/tmp"]
    assert text.count("--tmpfs ") == 1
    (tmp,) = [v for v in pod["volumes"] if v["name"] in empty_dirs]
    assert f"--tmpfs /tmp:rw,size={tmp['emptyDir']['sizeLimit'].removesuffix('Mi')}m" in text


def test_a_worker_running_as_root_fails(server_port: int, tmp_path: Path) -> None:
    probe = NON_ROOT + "\nprocess 9 1 10001 0 0 10001 120000\n" + VENV
    run = smoke(tmp_path, server_port, probe=probe)
    assert run.returncode == 1
    assert "process 9 runs as uid 0, want 10001" in run.stderr


def test_a_compiler_in_the_image_fails(server_port: int, tmp_path: Path) -> None:
    run = smoke(tmp_path, server_port, probe=NON_ROOT + "\ncompiler /usr/bin/gcc\n" + VENV)
    assert run.returncode == 1
    assert "the image holds a compiler: /usr/bin/gcc" in run.stderr


def test_a_training_library_in_the_image_fails(server_port: int, tmp_path: Path) -> None:
    run = smoke(tmp_path, server_port, probe=NON_ROOT + "\nmodule pandas\n" + VENV)
    assert run.returncode == 1
    assert "the image can import pandas, a training-only library" in run.stderr


def test_a_start_slower_than_the_cold_start_target_fails(server_port: int, tmp_path: Path) -> None:
    run = smoke(tmp_path, server_port, cold_start_target=0)
    assert run.returncode == 1
    assert "exceeds the target of 0s" in run.stderr


def test_an_image_without_the_fixed_user_fails_before_it_runs(
    server_port: int, tmp_path: Path
) -> None:
    run = smoke(tmp_path, server_port, user="")
    assert run.returncode == 1
    assert "image user is '', want 10001:10001" in run.stderr
    assert not [call for call in run.docker_calls if call.startswith("run ")]


def test_an_image_that_reports_another_revision_fails(server_port: int, tmp_path: Path) -> None:
    run = smoke(tmp_path, server_port, revision="f" * 40)
    assert run.returncode == 1
    assert "does not name revision" in run.stderr
    # The container's log is printed for the failure, then it is removed.
    assert "logs fake-container" in run.docker_calls
    assert run.docker_calls[-1] == "rm --force fake-container"
