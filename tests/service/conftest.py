"""Fixtures for the service tests: settings, an in-process client, a real gunicorn server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.app import IrisApp, create_app
from service.settings import Settings

with warnings.catch_warnings():
    # Starlette asks for the `httpx2` package instead of httpx, which the pinned dev
    # environment does not have; the TestClient works the same with httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def service_settings(trained_artifact_dir: Path) -> Settings:
    """Settings for in-process tests: the freshly trained artifact, JSON logs."""
    return Settings(model_dir=trained_artifact_dir, log_format="json")


def make_client(settings: Settings) -> TestClient:
    """A TestClient for create_app(settings); use it in a `with` block so startup runs."""
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(service_settings: Settings) -> Iterator[TestClient]:
    """One started app per test module (loading the model takes ~0.1 s)."""
    with make_client(service_settings) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def app(client: TestClient) -> IrisApp:
    application = client.app
    assert isinstance(application, IrisApp)
    return application


# --- a real `python -m service` -------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A running `python -m service` and where its output goes."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    metrics_dir: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8").splitlines()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return http("GET", self.base_url + path, timeout=timeout)

    def post(self, path: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
        return http("POST", self.base_url + path, body, timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """One request on a new connection; returns status and body whatever the status."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_server(
    tmp_path: Path, model_dir: Path, wait_ready: bool = True, port: int | None = None, **env: Any
) -> ServerProcess:
    """Start `python -m service` on loopback `port` (default: a free one), IRIS_* from `env`."""
    port = port if port is not None else free_port()
    metrics_dir = tmp_path / "metrics"
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "IRIS_MODEL_DIR": str(model_dir),
        "IRIS_HOST": "127.0.0.1",
        "IRIS_PORT": str(port),
        "IRIS_METRICS_DIR": str(metrics_dir),
        "IRIS_LOG_FORMAT": "json",
        **{f"IRIS_{key.upper()}": str(value) for key, value in env.items()},
    }
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=tmp_path,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(process, port, log_path, metrics_dir)
    if wait_ready:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited early:\n{log_path.read_text()}")
            try:
                if server.get("/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            server.stop()
            raise AssertionError(f"server never became ready:\n{log_path.read_text()}")
    return server


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, trained_artifact_dir: Path
) -> Iterator[ServerProcess]:
    """A real gunicorn with two uvicorn workers serving the trained artifact.

    Session-scoped: under xdist the tests using it may be interleaved with other
    modules, and a module-scoped server would be started more than once.
    """
    running = start_server(tmp_path_factory.mktemp("server"), trained_artifact_dir, workers=2)
    try:
        # Both workers must be up before tests count on them.
        deadline = time.monotonic() + 30
        while len(running.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield running
    finally:
        running.stop()
