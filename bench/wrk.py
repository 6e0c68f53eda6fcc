"""Drive a server with wrk and read back its figures (wrk prints them via bench/post.lua)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("post.lua")
MARKER = "WRK_JSON "


class WrkMissingError(RuntimeError):
    """wrk is not installed."""


def wrk_binary() -> str:
    """Path of wrk, or an error saying how to install it."""
    found = shutil.which("wrk")
    if not found:
        raise WrkMissingError("wrk is not on PATH; install it with `apt-get install -y wrk`")
    return found


CLIENT_SCHEDULING = ("batch", "normal")
"""How wrk may be scheduled: `batch` (SCHED_BATCH, see scheduling_prefix) or `normal`."""


def scheduling_prefix(policy: str) -> list[str]:
    """The command that runs wrk under `policy`: `chrt --batch 0` for SCHED_BATCH, nothing for
    `normal`. wrk shares the server's two cores here; a normal process woken by a response
    preempts the server that sent it, a batch one waits for the server to block or use up
    its time slice, as a client on another machine would not be in its way at all."""
    if policy not in CLIENT_SCHEDULING:
        raise ValueError(f"unknown client scheduling {policy!r}")
    if policy == "normal":
        return []
    chrt = shutil.which("chrt")
    if chrt is None:
        raise WrkMissingError(
            "chrt (util-linux) is not on PATH: it runs wrk as SCHED_BATCH; "
            "set BENCH_CLIENT_SCHED=normal to run without it"
        )
    return [chrt, "--batch", "0"]


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: counts, latency percentiles, and the CPU wrk itself used."""

    requests: int
    duration_s: float
    errors: int
    status_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    client_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def run_wrk(
    url: str,
    body_file: Path,
    duration_s: float,
    connections: int,
    threads: int,
    timeout_s: float = 5.0,
    headers: Mapping[str, str] | None = None,
    scheduling: str = "batch",
) -> WrkResult:
    """POST `body_file` to `url` from `connections` keep-alive connections for `duration_s`,
    with `headers` besides `Content-Type: application/json`, wrk scheduled by `scheduling`
    (scheduling_prefix)."""
    argv = [
        *scheduling_prefix(scheduling),
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration_s:g}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        argv,
        env={
            **os.environ,
            "WRK_BODY_FILE": str(body_file),
            "WRK_HEADERS": "\n".join(f"{k}: {v}" for k, v in (headers or {}).items()),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=duration_s + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
    raw = json.loads(lines[-1][len(MARKER) :])
    errors = sum(
        raw[key]
        for key in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        errors=errors,
        status_errors=raw["status_errors"],
        p50_ms=raw["p50_us"] / 1e3,
        p90_ms=raw["p90_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
        client_cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    )
