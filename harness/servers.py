"""Server processes: started in their own process group, waited for, stopped for good.

`service_server` is the one way tests, bench and reliability start the prediction
service: `python -m service` on a free loopback port, JSON logs to a file, its own
metrics directory. `start_service` also waits until every worker serves.
`baseline_server` starts one of the benchmark's comparison apps (bench/apps) the same
way; `make bench` and `make reliability` both measure against the raw-ASGI one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from harness import procs
from harness.http import request, try_request
from harness.ports import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    """A server process started by us, in its own session and process group."""

    name: str
    argv: Sequence[str]
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> None:
        """Start the process; output goes to `log_path` (or is discarded)."""
        env = {**os.environ, **self.env}
        sink = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(
                list(self.argv),
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if not isinstance(sink, int):
                sink.close()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The running process; an error if it was never started."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET `path` on a fresh connection: status and body."""
        return request(self.port, "GET", path, timeout=timeout)

    def post(self, path: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
        """POST a JSON `body` to `path` on a fresh connection: status and body."""
        return request(self.port, "POST", path, body, timeout=timeout)

    def wait_until(
        self, ready: Callable[[], bool], timeout: float = 60.0, interval: float = 0.005
    ) -> float:
        """Poll `ready` until it returns True; returns seconds since start. Raises if the
        process exits first or the timeout passes."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if ready():
                return time.perf_counter() - self.started_at
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before it was ready"
                    f"{self._log_tail()}"
                )
            time.sleep(interval)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s{self._log_tail()}")

    def _log_tail(self, lines: int = 15) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return "; last output:\n" + "\n".join(tail) if tail else ""

    def log_text(self) -> str:
        """Everything the server wrote so far."""
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[str]:
        """The server's output, line by line."""
        return self.log_text().splitlines()

    def workers(self) -> list[int]:
        """The processes doing the serving: the leaves of the process tree (gunicorn's
        workers, whether `python -m service` runs gunicorn in-process or as a child), or the
        process itself when it has no children."""
        tree = procs.descendants(self.pid)
        leaves = [pid for pid in tree if not procs.children(pid)]
        return leaves or [self.pid]

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process, then SIGKILL what lingers of its group; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        # Workers left behind stay in the group we created (start_new_session), whose id
        # is the master's pid; kill them one by one.
        for member in procs.group_members(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ServiceServer(Server):
    """`python -m service`, with its metrics port and the directory its workers write
    their metrics to."""

    metrics_dir: Path = Path()
    metrics_port: int = 0
    expected_workers: int = 2

    def metrics(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """GET /metrics on the metrics port: status and body."""
        return request(self.metrics_port, "GET", "/metrics", timeout=timeout)

    def metrics_when(
        self, counted: Callable[[str], bool], timeout: float = 10.0
    ) -> tuple[int, str]:
        """GET /metrics until `counted(text)` holds, or `timeout` passes: the last status
        and text.

        A worker writes what a request recorded when its event-loop turn ends, just after
        the answer went out, so a client that scrapes at once can be a moment ahead of
        the count. The caller asserts on the text returned: a count that never comes shows
        up as that assertion's failure, not as a timeout.
        """
        deadline = time.perf_counter() + timeout
        while True:
            status, body = self.metrics()
            text = body.decode()
            if (status == 200 and counted(text)) or time.perf_counter() > deadline:
                return status, text
            time.sleep(0.01)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until /readyz answers 200 and every worker serves; seconds since start.

        One worker answering /readyz says nothing of the others: a worker forked a moment
        later may still be starting. Each must be accepting on the port.
        """

        def ready() -> bool:
            if try_request(self.port, "GET", "/readyz", timeout=1.0) != 200:
                return False
            workers = self.workers()
            return len(workers) >= self.expected_workers and all(
                procs.accepting(pid, self.port) for pid in workers
            )

        return self.wait_until(ready, timeout=timeout, interval=0.02)


def service_server(
    model_dir: Path,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    *,
    name: str = "iris-api",
    cwd: Path | None = None,
    argv_prefix: Sequence[str] = (),
    port: int | None = None,
) -> ServiceServer:
    """`python -m service` serving `model_dir` on `port` (a free one unless given), not
    started yet.

    Its log and metrics directory go in `workdir`; `env` adds or overrides IRIS_* (and
    other) variables. JSON logs unless `env` says otherwise.
    """
    port = port if port is not None else free_port()
    metrics = workdir / f"metrics-{name}-{port}"
    metrics.mkdir(parents=True, exist_ok=True)
    environment = {
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "IRIS_MODEL_DIR": str(model_dir),
        "IRIS_HOST": "127.0.0.1",
        "IRIS_PORT": str(port),
        "IRIS_METRICS_PORT": str(free_port()),
        "IRIS_METRICS_DIR": str(metrics),
        "IRIS_LOG_FORMAT": "json",
        **(env or {}),
    }
    return ServiceServer(
        name=name,
        argv=[*argv_prefix, sys.executable, "-m", "service"],
        port=port,
        env=environment,
        cwd=cwd or REPO_ROOT,
        log_path=workdir / f"{name}-{port}.log",
        metrics_dir=Path(environment["IRIS_METRICS_DIR"]),
        metrics_port=int(environment["IRIS_METRICS_PORT"]),
        expected_workers=int(environment.get("IRIS_WORKERS", "2")),
    )


RAW_ASGI = "bench.apps.raw_asgi:app"
"""The HTTP ceiling: a bare ASGI app under the service's gunicorn options."""


def baseline_server(name: str, target: str, workdir: Path, model_dir: Path) -> Server:
    """An ASGI app (`module:attribute`) under gunicorn with the service's own options
    (`python -m bench.serve`), on a free loopback port, not started yet."""
    port = free_port()
    return Server(
        name=name,
        argv=[sys.executable, "-m", "bench.serve", target],
        port=port,
        env={
            "PYTHONPATH": str(REPO_ROOT),
            "IRIS_MODEL_DIR": str(model_dir),
            "IRIS_PORT": str(port),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        cwd=REPO_ROOT,
        log_path=workdir / f"{name}.log",
    )


def start_service(
    model_dir: Path,
    workdir: Path,
    *,
    wait: bool = True,
    port: int | None = None,
    **settings: object,
) -> ServiceServer:
    """Start `python -m service` (on `port`, else a free one) with IRIS_<NAME>=value for
    each of `settings`; unless `wait` is False, return once every worker serves (stopping
    it if it never does)."""
    env = {f"IRIS_{key.upper()}": str(value) for key, value in settings.items()}
    server = service_server(model_dir, workdir, env, port=port)
    server.start()
    if wait:
        try:
            server.wait_ready()
        except RuntimeError:
            server.stop()
            raise
    return server
