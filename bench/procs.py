"""Start, watch and stop the servers that the benchmark and the reliability scenarios drive.

Everything here reads /proc directly (CPU ticks, resident memory, child processes) so the
harness needs nothing beyond the standard library, and every server runs in its own
process group on a free loopback port.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# kubectl's embedded kustomize probes this port; never hand it to a test server.
RESERVED_PORTS = frozenset({8080})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


def _stat_fields(pid: int) -> list[str]:
    # The command name (field 2) may hold spaces and parentheses; the rest follows the last ")".
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = _stat_fields(pid)
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of the process."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE_SIZE


def _live_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, stat fields) of every process still there when it is read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), _stat_fields(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue


def children(pid: int) -> list[int]:
    """Direct children of a process, oldest first."""
    found = [(int(f[19]), child) for child, f in _live_stats() if int(f[1]) == pid]
    return [child for _, child in sorted(found)]  # sorted by start time


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    return [pid for pid, f in _live_stats() if int(f[2]) == pgid and f[0] != "Z"]


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    result: list[int] = []
    queue = [pid]
    while queue:
        for child in children(queue.pop()):
            result.append(child)
            queue.append(child)
    return result


def per_process(pids: Iterable[int], read: Callable[[int], _T]) -> dict[int, _T]:
    """`read(pid)` for each process, leaving out those that exited meanwhile."""
    result = {}
    for pid in pids:
        try:
            result[pid] = read(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return result


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection to 127.0.0.1; returns status and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def try_request(
    port: int, method: str, path: str, body: bytes | None = None, timeout: float = 2.0
) -> int | None:
    """Like `request` but returns None when nothing answers."""
    try:
        return request(port, method, path, body, timeout=timeout)[0]
    except (OSError, http.client.HTTPException):
        return None


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
            if self.log_path and not isinstance(sink, int):
                sink.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was not started"
        return self.proc.pid

    def wait_until(
        self, ready: Callable[[], bool], timeout: float = 60.0, interval: float = 0.005
    ) -> float:
        """Poll `ready` until it returns True; returns seconds since start. Raises if the
        process exits first or the timeout passes."""
        assert self.proc is not None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if ready():
                return time.perf_counter() - self.started_at
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready"
                    f"{self._log_tail()}"
                )
            time.sleep(interval)
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s{self._log_tail()}")

    def _log_tail(self, lines: int = 15) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "; last output:\n" + "\n".join(tail)

    def log_text(self) -> str:
        """Everything the server wrote so far."""
        if not self.log_path or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[int]:
        """The processes doing the serving: the leaves of the process tree (gunicorn's
        workers, whether `python -m service` runs gunicorn in-process or as a child), or the
        process itself when it has no children."""
        tree = descendants(self.pid)
        leaves = [pid for pid in tree if not children(pid)]
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
        for member in group_members(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        return self.proc.returncode

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
