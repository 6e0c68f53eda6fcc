"""The knobs of one benchmark run, read from BENCH_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.wrk import CLIENT_SCHEDULING

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO_ROOT / ".venv-bench"


def env_float(name: str, default: float) -> float:
    """The float in variable `name`, or `default` when it is unset or blank."""
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_int(name: str, default: int) -> int:
    """The integer in variable `name`, or `default` when it is unset or blank."""
    return int(env_float(name, default))


def _skipped() -> list[str]:
    return [s.strip() for s in os.environ.get("BENCH_SKIP", "").split(",") if s.strip()]


def _client_scheduling() -> str:
    # wrk as SCHED_BATCH unless asked otherwise: docs/performance.md says why.
    value = os.environ.get("BENCH_CLIENT_SCHED", "").strip() or "batch"
    if value not in CLIENT_SCHEDULING:
        raise ValueError(
            f"BENCH_CLIENT_SCHED must be one of {', '.join(CLIENT_SCHEDULING)}: {value!r}"
        )
    return value


def _results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS", REPO_ROOT / "bench/results"))


@dataclass
class Config:
    """Knobs of one benchmark run (docs/performance.md lists them)."""

    duration: float = field(default_factory=lambda: env_float("BENCH_DURATION", 5))
    warmup: float = field(default_factory=lambda: env_float("BENCH_WARMUP", 2))
    rounds: int = field(default_factory=lambda: env_int("BENCH_ROUNDS", 4))
    connections: int = field(default_factory=lambda: env_int("BENCH_CONNECTIONS", 32))
    threads: int = field(default_factory=lambda: env_int("BENCH_THREADS", 2))
    batch_rows: int = field(default_factory=lambda: env_int("BENCH_BATCH_ROWS", 100))
    cold_starts: int = field(default_factory=lambda: env_int("BENCH_COLD_STARTS", 3))
    mlserver_workers: int = field(default_factory=lambda: env_int("BENCH_MLSERVER_WORKERS", 0))
    profile: float = field(default_factory=lambda: env_float("BENCH_PROFILE", 0))
    # Runs during which other processes kept more than this many cores busy are left out
    # of the medians (if the case has a quieter run): on 2 cores they measure the neighbours.
    max_other_cpu: float = field(default_factory=lambda: env_float("BENCH_MAX_OTHER_CPU", 0.25))
    client_sched: str = field(default_factory=_client_scheduling)
    skip: list[str] = field(default_factory=_skipped)
    results: Path = field(default_factory=_results_dir)
