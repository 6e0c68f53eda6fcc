"""One server per port: a second server, or another program on the port, stops the start.

Every worker binds its own SO_REUSEPORT socket, which the kernel would happily share
with a second server of the same user; the master claims the port before it forks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gunicorn.errors import HaltServer

from harness.ports import free_port
from harness.servers import ServiceServer, start_service
from service.server import CONFIG_EXIT, MAX_FAILED_BOOTS, BootWatch
from service.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("service-server")]

_HOLDER = """
import socket, sys
sock = socket.socket()
if sys.argv[2] == "reuseport":
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
print("listening", flush=True)
sys.stdin.read()
"""


def _refused(server: ServiceServer, port: int) -> list[str]:
    """The refused server's exit and log: status 2, the one line, no worker ever started."""
    code = server.process.wait(timeout=30)
    lines = server.log_lines()
    assert code == CONFIG_EXIT, "\n".join(lines)
    errors = [json.loads(line) for line in lines if "cannot serve" in line]
    assert len(errors) == 1, "\n".join(lines)
    assert errors[0]["level"] == "error"
    assert f"port {port} is in use; set IRIS_PORT" in errors[0]["message"]
    assert not any("Booting worker" in line for line in lines), "\n".join(lines)
    assert not any("model loaded" in line for line in lines), "port first, then the model"
    assert "Traceback" not in server.log_text()
    return lines


def test_second_server_on_the_same_port_exits_and_the_first_keeps_every_request(
    tmp_path: Path, trained_artifact_dir: Path
) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = start_service(trained_artifact_dir, tmp_path / "first", workers=2)
    try:
        version = json.loads(first.get("/version")[1])["model_version"]
        second = start_service(
            trained_artifact_dir, tmp_path / "second", wait=False, port=first.port, workers=2
        )
        started = time.monotonic()
        _refused(second, first.port)
        assert time.monotonic() - started < 15

        # Only the first server answers: every new connection reaches one of its workers.
        answers = [json.loads(first.get("/version")[1]) for _ in range(12)]
        assert {answer["model_version"] for answer in answers} == {version}
        assert first.process.poll() is None
    finally:
        first.stop()


@pytest.mark.parametrize("holder", ["plain", "reuseport"])
def test_port_held_by_another_program_stops_the_start_with_one_line(
    tmp_path: Path, trained_artifact_dir: Path, holder: str
) -> None:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(port), holder],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as foreign:
        try:
            assert foreign.stdout is not None
            assert foreign.stdout.readline().strip() == "listening"
            (tmp_path / "server").mkdir()
            server = start_service(
                trained_artifact_dir, tmp_path / "server", wait=False, port=port, workers=2
            )
            _refused(server, port)
        finally:
            foreign.kill()


def test_start_log_names_the_address_gunicorn_listens_at(server: ServiceServer) -> None:
    lines = [json.loads(line) for line in server.log_lines()]
    listening = [line["message"] for line in lines if line["message"].startswith("Listening at")]
    assert listening == [f"Listening at: http://127.0.0.1:{server.port} ({server.process.pid})"]


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: Any) -> None:
        self.warnings.append(message % args)


def _worker(age: int) -> Any:
    return SimpleNamespace(age=age, pid=1000 + age)


def test_master_gives_up_after_workers_keep_exiting_before_serving() -> None:
    port = free_port()
    watch = BootWatch(Settings(host="127.0.0.1", port=port))
    server = SimpleNamespace(log=_Log())
    # A worker that served and then died (a crash, an OOM kill) is not a failed boot.
    watch.booted(_worker(1))
    watch.exited(server, _worker(1))
    assert watch.failed_in_a_row == 0

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        for age in range(2, 2 + MAX_FAILED_BOOTS - 1):
            watch.exited(server, _worker(age))
        assert watch.failed_in_a_row == MAX_FAILED_BOOTS - 1
        with pytest.raises(HaltServer) as halted:
            watch.exited(server, _worker(99))
    assert halted.value.exit_status == 3
    assert f"{MAX_FAILED_BOOTS} workers in a row exited before serving" in halted.value.reason
    assert f"port {port} is in use; set IRIS_PORT" in halted.value.reason
    assert len(server.log.warnings) == MAX_FAILED_BOOTS
    # Halting reaps the other workers through the same hook: it must not halt twice.
    watch.exited(server, _worker(100))


def test_a_booted_worker_is_seen_by_the_master_across_fork() -> None:
    watch = BootWatch(Settings())
    server = SimpleNamespace(log=_Log())
    worker = _worker(7)
    pid = os.fork()
    if pid == 0:  # the worker side: what gunicorn's post_worker_init runs
        watch.booted(worker)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    watch.exited(server, worker)
    assert watch.failed_in_a_row == 0
    watch.exited(server, _worker(8))  # never booted
    assert watch.failed_in_a_row == 1
