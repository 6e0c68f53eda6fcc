"""Scenarios 1-3: the real service (gunicorn, `python -m service`) under sustained load, during a
graceful shutdown under load, and when a worker is killed mid-load."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from harness import procs
from harness.servers import service_server
from reliability.load import LoadResult, one_request, run_load
from reliability.outcome import Outcome
from reliability.workload import MIX, READYZ, WORK

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
        server.wait_ready()
        # Warm-up first, so first-request allocations do not count as growth.
        asyncio.run(run_load(server.port, MIX, connections, warmup_s))
        workers = server.workers()
        before = procs.rss_by_pid(workers)
        peak = dict(before)

        async def drive() -> LoadResult:
            load = asyncio.create_task(run_load(server.port, MIX, connections, duration_s))
            while not load.done():
                for pid, rss in procs.rss_by_pid(workers).items():
                    peak[pid] = max(peak.get(pid, 0), rss)
                await asyncio.sleep(0.5)
            return await load

        result = asyncio.run(drive())
        after = procs.rss_by_pid(workers)
        same_workers = sorted(server.workers()) == sorted(workers)
    growth = {pid: (after.get(pid, 0) - before[pid]) / procs.MIB for pid in before}
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
        "rss_before_mib": [round(v / procs.MIB, 1) for v in before.values()],
        "rss_after_mib": [round(v / procs.MIB, 1) for v in after.values()],
        "rss_peak_mib": [round(v / procs.MIB, 1) for v in peak.values()],
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
        server.wait_ready()
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
    return _judge_shutdown(out, result, probes, timings, code, drain_s, graceful_timeout_s)


def _judge_shutdown(
    out: Outcome,
    result: LoadResult,
    probes: list[tuple[float, int | None, str | None]],
    timings: dict[str, float],
    code: int | None,
    drain_s: float,
    graceful_timeout_s: int,
) -> Outcome:
    """Scenario 2's figures and checks, from what the client and the readiness probe saw."""
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
        server.wait_ready()
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
                    theirs = procs.socket_inodes(new[0]) & procs.tcp_socket_inodes(
                        server.port, procs.TCP_ESTABLISHED
                    )
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
    survived = master_alive and len(final_workers) == 2
    return _judge_crash(out, result, timings, shares, survived, connections, recovery_bound_s)


def _judge_crash(
    out: Outcome,
    result: LoadResult,
    timings: dict[str, float],
    shares: dict[int, float],
    survived: bool,
    connections: int,
    recovery_bound_s: float,
) -> Outcome:
    """Scenario 3's figures and checks, from the load and the kill's timings."""
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
    out.check("master survived and runs 2 workers", survived)
    out.check(f"replacement serving within {recovery_bound_s:g} s", serving_s <= recovery_bound_s)
    return out
