"""A small HTTP/1.1 load generator on asyncio streams, for the reliability scenarios.

Unlike wrk it records every request (when it started, how long it took, its status, or
how it failed), can stop issuing requests when told to (as a load balancer does when a
pod turns unready), and needs nothing beyond the standard library. Each connection is
kept alive for `requests_per_connection` requests and then replaced, so the load spreads
over gunicorn's workers the way many independent clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    """One request template: method, path, body (JSON)."""

    method: str
    path: str
    body: bytes = b""

    def encode(self, port: int) -> bytes:
        head = f"{self.method} {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        if self.body or self.method in ("POST", "PUT"):
            head += f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        return head.encode() + b"\r\n" + self.body


@dataclass
class LoadResult:
    """Everything one load run saw."""

    started: float = 0.0
    finished: float = 0.0
    # (start offset s, latency s, status) of every request that got a response.
    responses: list[tuple[float, float, int]] = field(default_factory=list)
    # (start offset s, kind) of every request, or connection attempt, that failed.
    failures: list[tuple[float, str]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @property
    def sent(self) -> int:
        return len(self.responses) + sum(1 for _, kind in self.failures if kind != "connect")

    @property
    def non_2xx(self) -> int:
        return sum(1 for _, _, status in self.responses if not 200 <= status < 300)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(status for _, _, status in self.responses)

    @property
    def failure_kinds(self) -> Counter[str]:
        return Counter(kind for _, kind in self.failures)

    def percentile_ms(self, q: float) -> float:
        latencies = sorted(lat for _, lat, _ in self.responses)
        if not latencies:
            return float("nan")
        index = min(len(latencies) - 1, max(0, round(q / 100 * len(latencies)) - 1))
        return latencies[index] * 1000

    def throughput(self, window_s: float) -> list[float]:
        """Completed requests per second in consecutive windows from the start."""
        if not self.responses:
            return []
        buckets = int(self.duration / window_s) + 1
        counts = [0] * buckets
        for start, latency, _ in self.responses:
            counts[min(buckets - 1, int((start + latency) / window_s))] += 1
        return [c / window_s for c in counts]

    def median_rps(self) -> float:
        windows = self.throughput(1.0)[:-1] or self.throughput(1.0)
        return statistics.median(windows) if windows else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns (status, server wants the connection closed)."""
    status_line = await reader.readuntil(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"bad status line {status_line!r}")
    status = int(parts[1])
    length = 0
    chunked = False
    close = False
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        value = value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif name == "connection" and value == "close":
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionResetError | BrokenPipeError):
        return "closed"  # the server closed the connection before answering
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


async def run_load(
    port: int,
    requests: list[Request],
    connections: int,
    duration_s: float,
    *,
    requests_per_connection: int = 100,
    timeout_s: float = 10.0,
    stop: asyncio.Event | None = None,
    result: LoadResult | None = None,
) -> LoadResult:
    """Drive 127.0.0.1:`port` from `connections` concurrent connections for `duration_s`.

    Connection i sends requests[(i + n) % len(requests)] for its n-th request. If `stop` is
    set, no new request is sent after that moment; requests in flight still complete.
    """
    result = result or LoadResult()
    payloads = [r.encode(port) for r in requests]
    result.started = time.perf_counter()
    deadline = result.started + duration_s
    stop = stop or asyncio.Event()

    def more() -> bool:
        return time.perf_counter() < deadline and not stop.is_set()

    async def connection(index: int) -> None:
        sent = index
        while more():
            t0 = time.perf_counter()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), timeout_s
                )
            except (OSError, TimeoutError):
                result.failures.append((t0 - result.started, "connect"))
                await asyncio.sleep(0.05)
                continue
            try:
                for _ in range(requests_per_connection):
                    if not more():
                        break
                    payload = payloads[sent % len(payloads)]
                    sent += 1
                    t0 = time.perf_counter()
                    try:
                        writer.write(payload)
                        await writer.drain()
                        status, close = await asyncio.wait_for(_read_response(reader), timeout_s)
                    except (OSError, EOFError, ValueError, TimeoutError) as exc:
                        result.failures.append((t0 - result.started, _failure_kind(exc)))
                        break
                    now = time.perf_counter()
                    result.responses.append((t0 - result.started, now - t0, status))
                    if close:
                        break
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    result.finished = time.perf_counter()
    return result


async def one_request(
    port: int, request: Request, timeout_s: float = 2.0
) -> tuple[int | None, str | None]:
    """A single request on a fresh connection: (status, None) or (None, failure kind)."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout_s
        )
    except (OSError, TimeoutError):
        return None, "connect"
    try:
        writer.write(request.encode(port))
        await writer.drain()
        status, _ = await asyncio.wait_for(_read_response(reader), timeout_s)
        return status, None
    except (OSError, EOFError, ValueError, TimeoutError) as exc:
        return None, _failure_kind(exc)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
