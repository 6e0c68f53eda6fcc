"""The reliability scenarios. Each starts what it needs (the real service under gunicorn, real
git clones, the real GitOps tool), applies load or faults on loopback only, bounded in time,
and returns an Outcome: the figure and the checks it passed or failed.

`make reliability` runs the long forms (reliability/run.py); tests/reliability runs the same
functions with short parameters inside `make test`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procs
from reliability.load import LoadResult, one_request, run_load
from reliability.service import (
    LIVEZ,
    MIX,
    PREDICT,
    READYZ,
    WORK,
    service_server,
    wait_ready,
)

MIB = 2**20


@dataclass
class Outcome:
    """What one scenario measured and whether it held."""

    scenario: str
    load: str
    duration_s: float = 0.0
    requests: int = 0
    failures: int = 0
    figure: str = ""
    checks: list[tuple[str, bool]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def check(self, description: str, passed: bool) -> None:
        self.checks.append((description, bool(passed)))

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(passed for _, passed in self.checks)

    @property
    def verdict(self) -> str:
        failed = [d for d, passed in self.checks if not passed]
        if not self.checks:
            return "FAIL: nothing was checked"
        return "pass" if not failed else "FAIL: " + "; ".join(failed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "load": self.load,
            "duration_s": round(self.duration_s, 2),
            "requests": self.requests,
            "failures": self.failures,
            "figure": self.figure,
            "verdict": self.verdict,
            "checks": [{"check": d, "passed": p} for d, p in self.checks],
            "details": self.details,
        }


def _rss(pids: list[int]) -> dict[int, int]:
    return procs.per_process(pids, procs.rss_bytes)


# --- 1. sustained load ------------------------------------------------------------------------


def sustained_load(
    model_dir: Path,
    workdir: Path,
    *,
    connections: int = 64,
    duration_s: float = 60.0,
    warmup_s: float = 3.0,
    rss_growth_bound_mib: float = 20.0,
) -> Outcome:
    """Scenario 1: our gunicorn config under steady load: no errors, no leak, p99 reported."""
    out = Outcome("1 sustained load", f"{connections} conns, mixed requests")
    with service_server(model_dir, workdir) as server:
        wait_ready(server)
        # Warm-up first, so first-request allocations do not count as growth.
        asyncio.run(run_load(server.port, MIX, connections, warmup_s))
        workers = server.workers()
        before = _rss(workers)
        peak = dict(before)

        async def drive() -> LoadResult:
            load = asyncio.create_task(run_load(server.port, MIX, connections, duration_s))
            while not load.done():
                for pid, rss in _rss(workers).items():
                    peak[pid] = max(peak.get(pid, 0), rss)
                await asyncio.sleep(0.5)
            return await load

        result = asyncio.run(drive())
        after = _rss(workers)
        same_workers = sorted(server.workers()) == sorted(workers)
    growth = {pid: (after.get(pid, 0) - before[pid]) / MIB for pid in before}
    worst = max(growth.values()) if growth else float("nan")
    out.duration_s = result.duration
    out.requests = result.sent
    out.failures = len(result.failures) + result.non_2xx
    p99 = result.percentile_ms(99)
    out.figure = (
        f"{result.median_rps():,.0f} req/s, p50 {result.percentile_ms(50):.1f} ms, "
        f"p99 {p99:.1f} ms; RSS growth per worker "
        + ", ".join(f"{g:+.1f}" for g in growth.values())
        + " MiB"
    )
    out.details = {
        "statuses": dict(result.statuses),
        "failure_kinds": dict(result.failure_kinds),
        "p50_ms": result.percentile_ms(50),
        "p99_ms": p99,
        "rss_before_mib": [round(v / MIB, 1) for v in before.values()],
        "rss_after_mib": [round(v / MIB, 1) for v in after.values()],
        "rss_peak_mib": [round(v / MIB, 1) for v in peak.values()],
        "rss_growth_bound_mib": rss_growth_bound_mib,
    }
    out.check("every response 2xx", result.non_2xx == 0 and bool(result.responses))
    out.check("no connection errors", not result.failures)
    out.check("no worker died or was replaced", same_workers)
    out.check(
        f"RSS growth per worker <= {rss_growth_bound_mib:g} MiB", worst <= rss_growth_bound_mib
    )
    return out


# --- 2. graceful shutdown under load ----------------------------------------------------------


def graceful_shutdown(
    model_dir: Path,
    workdir: Path,
    *,
    connections: int = 32,
    load_before_s: float = 3.0,
    drain_s: float = 3.0,
    graceful_timeout_s: int = 20,
) -> Outcome:
    """Scenario 2: SIGTERM the master under load, as Kubernetes does on a rollout.

    The client behaves like a load balancer that watches readiness: it stops sending new
    requests once /readyz answers 503. Every request it did send must complete with 2xx,
    /readyz must answer 503 during the drain, and the master must exit 0 within the
    graceful timeout.
    """
    out = Outcome("2 graceful shutdown", f"{connections} conns, SIGTERM mid-load")
    env = {"IRIS_DRAIN_SECONDS": f"{drain_s:g}", "IRIS_GRACEFUL_TIMEOUT": str(graceful_timeout_s)}
    server = service_server(model_dir, workdir, env=env)
    server.start()
    try:
        wait_ready(server)
        probes: list[tuple[float, int | None, str | None]] = []
        timings: dict[str, float] = {}

        async def scenario() -> LoadResult:
            stop = asyncio.Event()
            result = LoadResult()
            # No /readyz in this load: its 503 while draining is the point, checked below.
            load = asyncio.create_task(
                run_load(
                    server.port,
                    WORK,
                    connections,
                    load_before_s + drain_s + 30,
                    stop=stop,
                    result=result,
                )
            )
            await asyncio.sleep(load_before_s)
            t_term = time.perf_counter()
            timings["sigterm"] = t_term
            os.kill(server.pid, signal.SIGTERM)
            loop = asyncio.get_running_loop()
            exited = loop.run_in_executor(None, server.proc.wait)  # type: ignore[union-attr]
            # Readiness as the kubelet probes it: a fresh connection every 50 ms.
            while not exited.done():
                status, failure = await one_request(server.port, READYZ, timeout_s=1.0)
                probes.append((time.perf_counter() - t_term, status, failure))
                if status == 503 and not stop.is_set():
                    timings["unready"] = time.perf_counter()
                    stop.set()  # the load balancer takes the pod out of rotation
                if failure == "connect" and "closed" not in timings:
                    timings["closed"] = time.perf_counter()
                    stop.set()
                await asyncio.sleep(0.05)
            await exited
            timings["exited"] = time.perf_counter()
            return await load

        result = asyncio.run(scenario())
        code = server.proc.returncode if server.proc else None
    finally:
        server.stop()
    t_term = timings["sigterm"]
    exit_s = timings["exited"] - t_term
    unready_s = timings.get("unready", float("nan")) - t_term
    in_flight = sum(
        1 for start, lat, _ in result.responses if start <= t_term - result.started <= start + lat
    )
    sent_after_term = sum(1 for start, _, _ in result.responses if start > t_term - result.started)
    out.duration_s = timings["exited"] - result.started  # load, drain and exit
    out.requests = result.sent
    out.failures = len(result.failures) + result.non_2xx
    out.figure = (
        f"503 on /readyz {unready_s * 1000:.0f} ms after SIGTERM; exit {code} after "
        f"{exit_s:.2f} s (drain {drain_s:g} s, graceful timeout {graceful_timeout_s} s); "
        f"{in_flight} in flight at SIGTERM, {sent_after_term} served while draining"
    )
    out.details = {
        "readiness_probes": [(round(t, 3), s, f) for t, s, f in probes[:200]],
        "statuses": dict(result.statuses),
        "failure_kinds": dict(result.failure_kinds),
        "exit_code": code,
        "exit_s": exit_s,
        "unready_after_s": unready_s,
    }
    probe_statuses = {s for _, s, _ in probes}
    out.check("every request sent completed with 2xx", result.non_2xx == 0 and not result.failures)
    out.check("/readyz answered 503 while draining", 503 in probe_statuses)
    out.check(
        "no 200 from /readyz after the first 503",
        not any(s == 200 for t, s, _ in probes if t >= unready_s),
    )
    out.check("master exited with 0", code == 0)
    out.check(
        f"exited within the graceful timeout ({graceful_timeout_s} s)", exit_s < graceful_timeout_s
    )
    out.check("requests were in flight at SIGTERM", in_flight > 0)
    return out


def shutdown_budget(deployment_yaml: Path) -> dict[str, float]:
    """preStop, drain, graceful timeout and grace period (s) of the Deployment's container."""
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(deployment_yaml.read_text())
    spec = doc["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        pre_stop_s = float(pre_stop["sleep"]["seconds"])
    else:
        command = " ".join(pre_stop.get("exec", {}).get("command", []))
        words = command.split()
        pre_stop_s = float(words[words.index("sleep") + 1]) if "sleep" in words else 0.0
    from service.settings import Settings

    defaults = Settings()
    return {
        "pre_stop_s": pre_stop_s,
        "drain_s": float(env.get("IRIS_DRAIN_SECONDS") or defaults.drain_seconds),
        "graceful_timeout_s": float(env.get("IRIS_GRACEFUL_TIMEOUT") or defaults.graceful_timeout),
        "grace_period_s": float(spec.get("terminationGracePeriodSeconds", 30)),
    }


# --- 3. worker crash ------------------------------------------------------------------------


def _established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = str(fd.readlink())
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(target[8:-1])
    except OSError:
        pass
    return found


def worker_crash(
    model_dir: Path,
    workdir: Path,
    *,
    connections: int = 32,
    duration_s: float = 20.0,
    kill_at_s: float = 5.0,
    recovery_bound_s: float = 5.0,
) -> Outcome:
    """Scenario 3: SIGKILL one worker under load; the master replaces it."""
    out = Outcome("3 worker crash", f"{connections} conns, SIGKILL 1 of 2 workers")
    timings: dict[str, float] = {}
    with service_server(model_dir, workdir) as server:
        wait_ready(server)
        original = server.workers()

        async def scenario() -> LoadResult:
            result = LoadResult()
            load = asyncio.create_task(
                run_load(
                    server.port,
                    MIX,
                    connections,
                    duration_s,
                    requests_per_connection=50,
                    result=result,
                )
            )
            await asyncio.sleep(kill_at_s)
            victim = original[0]
            os.kill(victim, signal.SIGKILL)
            timings["kill"] = time.perf_counter()
            timings["kill_offset"] = timings["kill"] - result.started
            while not load.done():
                now = time.perf_counter()
                if now - result.started > duration_s - 2 and "cpu_from" not in timings:
                    timings["cpu_from"] = now
                    cpu_before.update({pid: procs.cpu_seconds(pid) for pid in server.workers()})
                new = [pid for pid in server.workers() if pid not in original]
                if new and "spawned" not in timings:
                    timings["spawned"] = now
                    timings["replacement"] = new[0]
                if new and "serving" not in timings:
                    theirs = _socket_inodes(new[0]) & _established_inodes(server.port)
                    if theirs:
                        timings["serving"] = now
                await asyncio.sleep(0.01)
            return await load

        cpu_before: dict[int, float] = {}
        result = asyncio.run(scenario())
        final_workers = server.workers()
        elapsed = time.perf_counter() - timings.get("cpu_from", time.perf_counter())
        shares = {
            pid: (procs.cpu_seconds(pid) - cpu_before[pid]) / max(elapsed, 1e-3)
            for pid in final_workers
            if pid in cpu_before
        }
        master_alive = server.proc is not None and server.proc.poll() is None
    kill_at = timings["kill_offset"]
    spawned_s = timings.get("spawned", float("inf")) - timings["kill"]
    serving_s = timings.get("serving", float("inf")) - timings["kill"]
    windows = result.throughput(0.5)
    before = sorted(windows[1 : int(kill_at / 0.5)]) or [0.0]
    after = windows[int((kill_at + max(serving_s, 0) + 1) / 0.5) : -1] or [0.0]
    failed_after_kill = [kind for start, kind in result.failures if start >= kill_at - 1]
    out.duration_s = result.duration
    out.requests = result.sent
    out.failures = len(result.failures) + result.non_2xx
    out.figure = (
        f"{out.failures} failed request(s) (bound {2 * connections}); replacement forked after "
        f"{spawned_s:.2f} s, serving after {serving_s:.2f} s; throughput "
        f"{before[len(before) // 2]:,.0f} -> {after[len(after) // 2]:,.0f} req/s; worker CPU "
        f"at the end {'/'.join(f'{c:.0%}' for c in shares.values())}"
    )
    out.details = {
        "statuses": dict(result.statuses),
        "failure_kinds": dict(result.failure_kinds),
        "spawned_s": spawned_s,
        "serving_s": serving_s,
        "throughput_windows_0_5s": [round(w) for w in windows],
        "worker_cpu_last_2s": {str(pid): round(c, 3) for pid, c in shares.items()},
    }
    out.check("no non-2xx response", result.non_2xx == 0)
    # Each worker owns its SO_REUSEPORT socket, so the kill loses the requests in flight on
    # its keep-alive connections and the connections still queued on its socket, which the
    # kernel resets; a client that reconnects during the teardown can land in that queue
    # once more. Twice the connection count bounds both.
    bound = 2 * connections
    out.check(f"failed requests <= 2 x connections ({bound})", out.failures <= bound)
    out.check("failures only at the kill", len(failed_after_kill) == len(result.failures))
    out.check("master survived and runs 2 workers", master_alive and len(final_workers) == 2)
    out.check(f"replacement serving within {recovery_bound_s:g} s", serving_s <= recovery_bound_s)
    return out


# --- 4. bad artifact at start ---------------------------------------------------------------


def _break_artifact(kind: str, source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    metadata_path = target / "metadata.json"
    if kind == "missing model file":
        (target / "model.joblib").unlink()
    elif kind == "truncated joblib":
        data = (target / "model.joblib").read_bytes()
        (target / "model.joblib").write_bytes(data[: len(data) // 2])
    elif kind == "another scikit-learn":
        metadata = json.loads(metadata_path.read_text())
        metadata["versions"]["scikit-learn"] = "1.5.2"
        metadata_path.write_text(json.dumps(metadata))
    elif kind == "wrong feature names":
        metadata = json.loads(metadata_path.read_text())
        metadata["feature_names"] = [
            "sepal length (cm)",
            "sepal width (cm)",
            "petal length (cm)",
            "petal width (cm)",
        ]
        metadata_path.write_text(json.dumps(metadata))
    elif kind == "missing directory":
        shutil.rmtree(target)
    else:
        raise ValueError(kind)


BAD_ARTIFACTS = (
    "missing model file",
    "truncated joblib",
    "another scikit-learn",
    "wrong feature names",
    "missing directory",
)


def bad_artifacts(
    model_dir: Path,
    workdir: Path,
    *,
    kinds: tuple[str, ...] = BAD_ARTIFACTS,
    exit_bound_s: float = 2.5,
) -> Outcome:
    """Scenario 4: each broken artifact makes the process exit non-zero, quickly, with the
    artifact's own message, and it never answers ready."""
    from model.artifact import ArtifactError, load

    out = Outcome("4 bad artifact at start", f"{len(kinds)} broken artifacts")
    rows = []
    started = time.perf_counter()
    for kind in kinds:
        broken = workdir / f"artifact-{kind.replace(' ', '-')}"
        _break_artifact(kind, model_dir, broken)
        try:
            load(broken)
            expected = ""
        except ArtifactError as exc:
            expected = str(exc)
        server = service_server(broken, workdir, name=f"bad-{kind.replace(' ', '-')}")
        server.start()
        ready_seen = False
        try:
            assert server.proc is not None
            while server.proc.poll() is None:
                if time.perf_counter() - server.started_at > 30:
                    break
                if procs.try_request(server.port, "GET", "/readyz", timeout=0.5) == 200:
                    ready_seen = True
                time.sleep(0.02)
            exit_s = time.perf_counter() - server.started_at
        finally:
            code = server.stop()
        log = server.log_text()
        rows.append(
            {
                "kind": kind,
                "exit_code": code,
                "exit_s": round(exit_s, 2),
                "message_logged": bool(expected) and expected in log,
                "traceback_logged": "Traceback (most recent call last)" in log,
                "ready_seen": ready_seen,
                "expected_message": expected,
            }
        )
        out.check(f"{kind}: artifact check rejects it", bool(expected))
        out.check(f"{kind}: exit non-zero", code not in (0, None))
        out.check(f"{kind}: exit within {exit_bound_s:g} s", exit_s <= exit_bound_s)
        out.check(f"{kind}: logs the artifact's message", bool(rows[-1]["message_logged"]))
        out.check(f"{kind}: never ready", not ready_seen)
    out.duration_s = time.perf_counter() - started
    out.requests = len(kinds)
    out.failures = sum(1 for r in rows if r["exit_code"] in (0, None) or r["ready_seen"])
    out.figure = "exit " + ", ".join(f"{r['exit_code']} in {r['exit_s']:.2f} s" for r in rows)
    out.details = {"artifacts": rows}
    return out


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
        wait_ready(server)
        asyncio.run(run_load(server.port, MIX, 8, 1.0))
        workers = server.workers()
        rss_before = _rss(workers)
        from service.settings import Settings

        limit = Settings().max_body_bytes
        depth = limit // 2 - 20
        odd: dict[str, int | None] = {
            "body 4x the limit": _raw_exchange(server.port, _post("/predict", b" " * (4 * limit))),
            "body of 10 MiB": _raw_exchange(server.port, _post("/predict", b"[" * 10 * MIB)),
            "Content-Length of 1 GiB, no body": _raw_exchange(
                server.port,
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1073741824\r\nConnection: close\r\n\r\n",
                timeout_s=15,
            ),
            # Nesting as deep as fits under the body limit, so the parser, not the size
            # check, has to deal with it.
            f"JSON nested {depth:,} deep": _raw_exchange(
                server.port, _post("/predict", b"[" * depth + b"]" * depth)
            ),
            f"v2 tensor nested {depth - 50:,} deep": _raw_exchange(
                server.port,
                _post(
                    "/v2/models/iris/infer",
                    b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":'
                    + b"[" * (depth - 50)
                    + b"]" * (depth - 50)
                    + b"}]}",
                ),
            ),
            f"batch nested {depth - 10:,} deep": _raw_exchange(
                server.port,
                _post(
                    "/predict/batch",
                    b'{"instances":' + b"[" * (depth - 10) + b"]" * (depth - 10) + b"}",
                ),
            ),
            "invalid UTF-8": _raw_exchange(server.port, _post("/predict", b'{"\xff\xfe": 1}')),
            "NUL bytes": _raw_exchange(server.port, _post("/predict", b"\x00" * 1000)),
            "form content type": _raw_exchange(
                server.port, _post("/predict", b"a=1", "application/x-www-form-urlencoded")
            ),
        }
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
        rss_after = _rss(workers)
        same_workers = sorted(server.workers()) == sorted(workers)
    growth = max(((rss_after.get(p, 0) - v) / MIB for p, v in rss_before.items()), default=0.0)
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
