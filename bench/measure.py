"""Measuring one case: wrk's figures, per-worker CPU from /proc, cold starts, a profile."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from bench.cases import Case
from bench.config import BENCH_VENV, Config
from bench.wrk import WrkResult, run_wrk
from harness import procs
from harness.http import request
from harness.servers import Server


def _serving(server: Server) -> list[int]:
    return [server.pid, *procs.descendants(server.pid)]


def worker_cpu(server: Server) -> dict[int, float]:
    """CPU seconds of every serving process (gunicorn's workers, or MLServer's processes)."""
    return procs.per_process(_serving(server), procs.cpu_seconds)


def preemptions(server: Server) -> dict[int, int]:
    """Involuntary context switches so far of every serving process (as worker_cpu)."""
    return procs.per_process(_serving(server), procs.preemptions)


def _difference(before: dict[int, int], after: dict[int, int]) -> int:
    return sum(after[pid] - before[pid] for pid in set(after) & set(before))


def busy_cpu_seconds() -> tuple[float, float]:
    """CPU seconds all cores have spent not idle since boot, and of those in interrupts
    (mostly the loopback network's softirqs), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    interrupts = fields[5] + fields[6]  # irq + softirq
    return (sum(fields[:8]) - idle) / procs.CLOCK_TICKS, interrupts / procs.CLOCK_TICKS


def _body_file(case: Case) -> Path:
    if case.body_file is None:
        raise RuntimeError(f"{case.key}: no body file written")
    return case.body_file


def _drive(server: Server, case: Case, cfg: Config, duration: float) -> WrkResult:
    """wrk on `case` for `duration` seconds, with the run's connections, threads and client
    scheduling."""
    return run_wrk(
        f"{server.base_url}{case.path}",
        _body_file(case),
        duration,
        cfg.connections,
        cfg.threads,
        headers=case.headers,
        scheduling=cfg.client_sched,
    )


def measure(case: Case, server: Server, cfg: Config) -> dict[str, Any]:
    """One wrk run of `case` (after a warm-up), with the CPU each side used."""
    if cfg.warmup > 0:
        _drive(server, case, cfg, cfg.warmup)
    before = worker_cpu(server)
    switched_before = preemptions(server)
    busy_before = busy_cpu_seconds()
    result = _drive(server, case, cfg, cfg.duration)
    busy_after = busy_cpu_seconds()
    switched = _difference(switched_before, preemptions(server))
    after = worker_cpu(server)
    # gunicorn: its workers (the master only supervises). MLServer: every process, since
    # its HTTP server and inference pool are separate processes when parallel_workers > 0.
    pids = set(after) & set(before)
    if server.name != "mlserver":
        pids &= set(server.workers())
    per_worker = {pid: (after[pid] - before[pid]) / result.duration_s for pid in pids}
    everything = sum(after[pid] - before[pid] for pid in set(after) & set(before))
    # CPU the machine spent on anything but this server, wrk and interrupts: other work on
    # the host. Much of it means every figure of the run is low.
    machine_busy = busy_after[0] - busy_before[0]
    interrupts = busy_after[1] - busy_before[1]
    other = (machine_busy - interrupts - everything - result.client_cpu_s) / result.duration_s
    shares = sorted(per_worker.values(), reverse=True)
    balance = (shares[-1] / shares[0]) if len(shares) > 1 and shares[0] > 0 else 1.0
    return {
        "rps": result.rps,
        "rows_per_s": result.rps * case.rows,
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "p99_ms": result.p99_ms,
        "max_ms": result.max_ms,
        "requests": result.requests,
        "errors": result.errors,
        # Server CPU per answered request: comparable across servers even when the
        # machine is busy, where req/s mostly measures the neighbours.
        "cpu_us_per_request": round(sum(shares) / result.rps * 1e6, 1) if result.rps else 0.0,
        "worker_cpu": [round(s, 3) for s in shares],
        "worker_balance": round(balance, 3),
        "client_cpu": round(result.client_cpu_s / result.duration_s, 3),
        "other_cpu": round(max(other, 0.0), 3),
        "interrupt_cpu": round(interrupts / result.duration_s, 3),
        # How often the server was switched out though it could have gone on: mostly wrk,
        # woken by an answer, taking the core (config client_sched says how it ran).
        "preemptions_per_request": round(switched / result.requests, 3) if result.requests else 0.0,
    }


def answers(server: Server, case: Case, timeout: float = 5.0) -> bool:
    """True when the server answers `case` with 200 and a correct body (raises if wrong)."""
    try:
        status, body = request(
            server.port, "POST", case.path, case.body, headers=case.headers, timeout=timeout
        )
    except OSError:
        return False
    if status != 200:
        return False
    if case.verify:
        case.verify(body)
    return True


def cold_start(server: Server, case: Case) -> float:
    """Seconds from process start to the first correct answer to `case`."""
    return server.wait_until(lambda: answers(server, case, timeout=2), timeout=120)


def pandas_loaded(pid: int) -> bool:
    """True if the process has mapped pandas' compiled modules, i.e. imported pandas."""
    return "/pandas/" in procs.maps_text(pid)


def _py_spy(pid: int, seconds: float, raw: Path) -> subprocess.Popen[bytes]:
    argv = [str(BENCH_VENV / "bin" / "py-spy"), "record", "--pid", str(pid)]
    argv += ["--duration", f"{int(seconds)}", "--rate", "250", "--format", "raw"]
    argv += ["--output", str(raw), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def top_functions(raw: Path, limit: int = 20) -> tuple[int, list[tuple[str, float, float]]]:
    """From py-spy's raw output: samples, and (function, own share, inclusive share) of the
    functions with the most samples of their own."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        # "func (path/file.py:123)" -> "func (file.py)": one entry per function, not per line.
        frames = [re.sub(r"\((?:.*/)?([^/:]+):\d+\)$", r"(\1)", f) for f in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    top = sorted(own.items(), key=lambda kv: -kv[1])[:limit]
    return total, [(f, n / total, inclusive[f] / total) for f, n in top]


def profile_worker(server: Server, case: Case, cfg: Config, out: Path) -> list[str]:
    """py-spy on one service worker while wrk drives `case`; returns the top functions."""
    worker = server.workers()[0]
    raw = out.with_suffix(".txt")
    spy = _py_spy(worker, cfg.profile, raw)
    _drive(server, case, cfg, cfg.profile + 1)
    spy.wait(timeout=cfg.profile + 30)
    total, top = top_functions(raw)
    report = [
        f"py-spy on worker {worker} under {case.label}, {total} samples; "
        "share of samples in the function itself (and in it or below):"
    ]
    report += [f"  {100 * own:5.1f}% ({100 * below:5.1f}%)  {f}" for f, own, below in top]
    return report
