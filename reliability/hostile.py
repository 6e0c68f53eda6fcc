"""Scenario 5: hostile input (fuzzing, a swarm of connections, slow bodies) gets no 5xx and
holds no worker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import procs
from harness.servers import service_server
from reliability.load import one_request, run_load
from reliability.outcome import Outcome
from reliability.workload import LIVEZ, MIX, PREDICT

# --- 5. hostile input -----------------------------------------------------------------------


def _raw_exchange(port: int, data: bytes, timeout_s: float = 10.0) -> int | None:
    """Send raw bytes, return the response status (None if the server closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        # The server may answer 413 and close before taking the whole body.
        with contextlib.suppress(OSError):
            sock.sendall(data)
        received = b""
        try:
            while b"\r\n" not in received:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except OSError:
            pass
    if not received.startswith(b"HTTP/1."):
        return None
    return int(received.split(b" ", 2)[1])


def _post(path: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def _schemathesis(port: int, max_examples: int, workdir: Path) -> dict[str, Any]:
    """schemathesis against /openapi.json with only the 'no 5xx' check, `max_examples` each.

    One worker: with several threads, CPython 3.11 can fail schemathesis' own code generation
    ("AST constructor recursion depth mismatch"), which says nothing about the service.
    """
    binary = Path(sys.executable).with_name("schemathesis")
    report = workdir / f"schemathesis-{port}.ndjson"
    done = subprocess.run(
        [
            str(binary),
            "run",
            f"http://127.0.0.1:{port}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(max_examples),
            "--seed",
            "7",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
        cwd=workdir,  # schemathesis keeps a cache directory in its working directory
    )
    text = report.read_text() if report.exists() else ""
    return {
        "exit_code": done.returncode,
        "requests": text.count('"request":{'),
        "server_errors": text.count('"name":"not_a_server_error","status":"failure"'),
        "runtime_errors": text.count('"NonFatalError"') + text.count('"FatalError"'),
        "summary": done.stdout[-800:],
    }


async def _swarm(port: int, total: int, concurrency: int) -> tuple[dict[int, int], dict[str, int]]:
    """`total` tiny requests, each on its own connection, `concurrency` at a time."""
    statuses: dict[int, int] = {}
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            status, failure = await one_request(port, LIVEZ if i % 2 else PREDICT, 30.0)
        if status is not None:
            statuses[status] = statuses.get(status, 0) + 1
        else:
            failures[failure or "?"] = failures.get(failure or "?", 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    return statuses, failures


async def _slow_bodies(port: int, count: int, trickle_s: float) -> list[tuple[float, int | None]]:
    """Slowloris: `count` connections each announce a 1 kB body and send one byte a second
    for up to `trickle_s`. Returns, per connection, when the server gave up on it (answered
    or closed) and the status, or (inf, None) if it never did."""

    async def one() -> tuple[float, int | None]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        start = time.perf_counter()
        writer.write(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        try:
            while time.perf_counter() - start < trickle_s:
                try:
                    line = await asyncio.wait_for(reader.readline(), 1.0)
                except TimeoutError:
                    writer.write(b" ")
                    try:
                        await writer.drain()
                    except OSError:
                        return time.perf_counter() - start, None
                    continue
                if not line:
                    return time.perf_counter() - start, None
                return time.perf_counter() - start, int(line.split(b" ", 2)[1])
            return float("inf"), None
        except OSError:
            return time.perf_counter() - start, None
        finally:
            writer.close()

    return list(await asyncio.gather(*(one() for _ in range(count))))


def _odd_bodies(port: int, limit: int) -> dict[str, int | None]:
    """The status each malformed or oversized request got (None: no answer)."""
    depth = limit // 2 - 20
    return {
        "body 4x the limit": _raw_exchange(port, _post("/predict", b" " * (4 * limit))),
        "body of 10 MiB": _raw_exchange(port, _post("/predict", b"[" * 10 * procs.MIB)),
        "Content-Length of 1 GiB, no body": _raw_exchange(
            port,
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1073741824\r\nConnection: close\r\n\r\n",
            timeout_s=15,
        ),
        # Nesting as deep as fits under the body limit, so the parser, not the size
        # check, has to deal with it.
        f"JSON nested {depth:,} deep": _raw_exchange(
            port, _post("/predict", b"[" * depth + b"]" * depth)
        ),
        f"v2 tensor nested {depth - 50:,} deep": _raw_exchange(
            port,
            _post(
                "/v2/models/iris/infer",
                b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":'
                + b"[" * (depth - 50)
                + b"]" * (depth - 50)
                + b"}]}",
            ),
        ),
        f"batch nested {depth - 10:,} deep": _raw_exchange(
            port,
            _post(
                "/predict/batch",
                b'{"instances":' + b"[" * (depth - 10) + b"]" * (depth - 10) + b"}",
            ),
        ),
        "invalid UTF-8": _raw_exchange(port, _post("/predict", b'{"\xff\xfe": 1}')),
        "NUL bytes": _raw_exchange(port, _post("/predict", b"\x00" * 1000)),
        "form content type": _raw_exchange(
            port, _post("/predict", b"a=1", "application/x-www-form-urlencoded")
        ),
    }


def hostile_input(
    model_dir: Path,
    workdir: Path,
    *,
    schemathesis_examples: int = 300,
    swarm_requests: int = 10_000,
    swarm_concurrency: int = 1_000,
    slow_connections: int = 20,
    slow_trickle_s: float = 40.0,
    slow_bound_s: float | None = None,
    rss_bound_mib: float = 64.0,
) -> Outcome:
    """Scenario 5: fuzzing, oversized and deeply nested bodies, slow bodies, a swarm of tiny
    requests: no 5xx, no worker death, memory bounded."""
    out = Outcome("5 hostile input", "")
    started = time.perf_counter()
    with service_server(model_dir, workdir) as server:
        server.wait_ready()
        asyncio.run(run_load(server.port, MIX, 8, 1.0))
        workers = server.workers()
        rss_before = procs.rss_by_pid(workers)
        from service.settings import Settings

        odd = _odd_bodies(server.port, Settings().max_body_bytes)
        fuzz = (
            _schemathesis(server.port, schemathesis_examples, workdir)
            if schemathesis_examples
            else None
        )
        swarm_started = time.perf_counter()
        statuses, swarm_failures = asyncio.run(
            _swarm(server.port, swarm_requests, swarm_concurrency)
        )
        swarm_s = time.perf_counter() - swarm_started
        slow: list[tuple[float, int | None]] = []
        if slow_connections:
            slow_result: dict[str, Any] = {}

            async def slow_and_served() -> None:
                task = asyncio.create_task(
                    _slow_bodies(server.port, slow_connections, slow_trickle_s)
                )
                # While slow clients hold connections, others must still be served.
                await asyncio.sleep(2.0)
                probe = await run_load(server.port, [PREDICT], 4, 2.0)
                slow_result["probe"] = probe
                slow_result["slow"] = await task

            asyncio.run(slow_and_served())
            slow = slow_result["slow"]
            probe = slow_result["probe"]
        rss_after = procs.rss_by_pid(workers)
        same_workers = sorted(server.workers()) == sorted(workers)
    growth = max(
        ((rss_after.get(p, 0) - v) / procs.MIB for p, v in rss_before.items()), default=0.0
    )
    five_xx = [name for name, status in odd.items() if status is None or status >= 500]
    swarm_5xx = sum(n for s, n in statuses.items() if s >= 500)
    out.load = (
        f"{len(odd)} malformed bodies, {schemathesis_examples} fuzz examples/op, "
        f"{swarm_requests:,} tiny requests x{swarm_concurrency}, {slow_connections} slow bodies"
    )
    out.duration_s = time.perf_counter() - started
    out.requests = len(odd) + swarm_requests + (fuzz["requests"] if fuzz else 0) + len(slow)
    out.failures = len(five_xx) + swarm_5xx + sum(swarm_failures.values())
    slow_given_up = [t for t, _ in slow if t != float("inf")]
    out.figure = (
        f"{swarm_requests:,} tiny requests in {swarm_s:.1f} s; RSS growth {growth:+.1f} MiB; "
        + (
            f"slow bodies cut after {max(slow_given_up):.0f} s"
            if slow and len(slow_given_up) == len(slow)
            else (
                f"{len(slow) - len(slow_given_up)} slow bodies still open after "
                f"{slow_trickle_s:g} s"
                if slow
                else "no slow-body run"
            )
        )
    )
    out.details = {
        "malformed": odd,
        "schemathesis": fuzz,
        "swarm_statuses": statuses,
        "swarm_failures": swarm_failures,
        "slow_bodies": [(round(t, 2), s) for t, s in slow],
        "rss_growth_mib": growth,
    }
    for name, status in odd.items():
        out.check(f"{name}: 4xx (got {status})", status is not None and 400 <= status < 500)
    if fuzz is not None:
        out.check(
            f"schemathesis: {fuzz['requests']} requests, no 5xx",
            fuzz["requests"] > 0 and fuzz["server_errors"] == 0,
        )
    out.check("swarm: no 5xx", swarm_5xx == 0)
    out.check("swarm: every request answered", not swarm_failures)
    if slow:
        out.check(
            "served others while slow bodies were open",
            bool(probe.responses) and probe.non_2xx == 0 and not probe.failures,
        )
        if slow_bound_s is not None:
            out.check(
                f"slow bodies cut within {slow_bound_s:g} s",
                len(slow_given_up) == len(slow) and max(slow_given_up) <= slow_bound_s,
            )
    out.check("no worker died", same_workers)
    out.check(f"RSS growth <= {rss_bound_mib:g} MiB", growth <= rss_bound_mib)
    return out
