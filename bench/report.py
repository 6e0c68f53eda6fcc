"""From runs to results: medians per case, the ratios the targets are about, the table."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.cases import Case
from bench.wrk import wrk_binary

Summary = dict[str, Any]

# The targets, as (label, key in the figures, comparison, bound). Absolute figures move
# with the day (docs/performance.md), so every target is a ratio within one run.
TARGETS: list[tuple[str, str, str, float]] = [
    ("single-row req/s >= 0.5x raw ASGI", "ratio_vs_raw_asgi", ">=", 0.5),
    ("single-row req/s >= 15x MLServer", "ratio_vs_mlserver", ">=", 15.0),
    ("single-row p99 <= 1.5x raw ASGI p99", "p99_vs_raw_asgi", "<=", 1.5),
    ("batch rows/s >= 40x raw ASGI req/s (best route)", "batch_rows_vs_raw_asgi_rps", ">=", 40.0),
    ("cold start <= 2x raw ASGI cold start", "cold_start_vs_raw_asgi", "<=", 2.0),
]


def summarise(case: Case, max_other_cpu: float) -> Summary:
    """Medians over the case's runs, leaving out runs disturbed by other work on the machine
    (more than `max_other_cpu` cores busy with other processes) when a quiet run exists."""
    runs = case.runs
    quiet = [r for r in runs if r["other_cpu"] <= max_other_cpu]
    used = quiet or runs
    med = {
        key: statistics.median(r[key] for r in used)
        for key in (
            "rps",
            "rows_per_s",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "cpu_us_per_request",
            "preemptions_per_request",
        )
        if all(key in r for r in used)
    }
    return {
        "name": case.label,
        "server": case.server,
        "path": case.path,
        "rows_per_request": case.rows,
        **{k: round(v, 3) for k, v in med.items()},
        "rps_min": round(min(r["rps"] for r in used), 1),
        "rps_max": round(max(r["rps"] for r in used), 1),
        "runs_used": len(used),
        "noisy_runs": len(runs) - len(quiet),
        "errors": sum(r["errors"] for r in runs),
        # Runs in which one worker did less than half the work of the other: gunicorn
        # handing most keep-alive connections to one worker (see docs/performance.md).
        "imbalanced_runs": sum(1 for r in runs if r["worker_balance"] < 0.5),
        "other_cpu": round(statistics.median(r["other_cpu"] for r in used), 2),
        "runs": runs,
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def figures_from(summaries: dict[str, Summary], cold: dict[str, float]) -> dict[str, Any]:
    """The figures the targets and the README quote, by case key."""

    def get(key: str, field: str) -> float | None:
        return summaries[key][field] if key in summaries else None

    ours = get("predict", "rps")
    raw = get("raw", "rps")
    batch_routes = {key: get(key, "rows_per_s") for key in ("batch", "v2-batch", "v2-binary-batch")}
    best_batch = max((v for v in batch_routes.values() if v is not None), default=None)
    return {
        "rps": ours,
        "ratio_vs_tidy": _ratio(ours, get("tidy", "rps")),
        "ratio_vs_tutorial": _ratio(ours, get("tutorial", "rps")),
        "ratio_vs_mlserver": _ratio(ours, get("mlserver", "rps")),
        "ratio_vs_raw_asgi": _ratio(ours, raw),
        "p99_ms": get("predict", "p99_ms"),
        "p99_vs_raw_asgi": _ratio(get("predict", "p99_ms"), get("raw", "p99_ms")),
        "batch_rows_per_s": batch_routes["batch"],
        "v2_batch_rows_per_s": batch_routes["v2-batch"],
        "v2_binary_batch_rows_per_s": batch_routes["v2-binary-batch"],
        "batch_rows_vs_raw_asgi_rps": _ratio(best_batch, raw),
        # Against the ceiling of the path the service's routes take (no ASGI): reported
        # beside the targets, which are defined against the raw-ASGI app.
        "ratio_vs_raw_whole": _ratio(ours, get("raw-whole", "rps")),
        "batch_rows_vs_raw_whole_rps": _ratio(best_batch, get("raw-whole", "rps")),
        "batch_ratio_vs_mlserver": _ratio(best_batch, get("mlserver-batch", "rows_per_s")),
        "cold_start_s": cold.get("iris-api"),
        "cold_start_vs_raw_asgi": _ratio(cold.get("iris-api"), cold.get("raw-asgi")),
        **request_cost(summaries),
    }


def request_cost(summaries: dict[str, Summary]) -> dict[str, float | None]:
    """Server CPU of one /predict request, split: the HTTP server (the raw app on the path
    /predict takes, a whole request without ASGI; the raw-ASGI app when that was not
    measured), the dispatch and prediction (the service without its front, minus that), and
    the front (request id, body policy, log line, metrics: the service minus the service
    without it)."""

    def cpu(key: str) -> float | None:
        summary = summaries.get(key)
        return summary.get("cpu_us_per_request") if summary else None

    service, bare = cpu("predict"), cpu("bare")
    raw = cpu("raw-whole")
    if raw is None:
        raw = cpu("raw")
    return {
        "cpu_us_per_request": service,
        "http_server_us": raw,
        "prediction_us": round(bare - raw, 1) if bare is not None and raw is not None else None,
        "front_us": round(service - bare, 1) if service is not None and bare is not None else None,
    }


def check_targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its value and verdict: met, MISSED or not measured."""
    verdicts = []
    for label, key, op, bound in TARGETS:
        value = figures.get(key)
        if value is None:
            verdict = "not measured"
        elif (value >= bound) if op == ">=" else (value <= bound):
            verdict = "met"
        else:
            verdict = "MISSED"
        verdicts.append({"target": label, "value": value, "bound": bound, "verdict": verdict})
    return verdicts


def machine() -> dict[str, Any]:
    """The machine and tools the figures were measured with."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run(
        [wrk_binary(), "-v"], capture_output=True, text=True, check=False
    ).stdout.split("\n", 1)[0]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": wrk_version.strip(),
    }


def fmt(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators, "-" when missing."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _vs(summary: Summary, other: Summary | None) -> str:
    if not other:
        return "-"
    return f"{summary['rows_per_s'] / other['rows_per_s']:.2f}x"


def _row(summary: Summary, summaries: dict[str, Summary]) -> str:
    single = summary["rows_per_request"] == 1
    mlserver = summaries.get("mlserver" if single else "mlserver-batch")
    last = summary["runs"][-1]["worker_cpu"] if summary["runs"] else []
    runs = len(summary["runs"])
    cells = [
        summary["name"],
        f"{fmt(summary['rps'])} ({fmt(summary['rps_min'])}-{fmt(summary['rps_max'])})",
        f"{summary['p50_ms']:.2f}",
        f"{summary['p99_ms']:.2f}",
        fmt(summary["rows_per_s"]),
        _vs(summary, summaries.get("tidy")) if single else "-",
        _vs(summary, mlserver),
        _vs(summary, summaries.get("raw")) if single else "-",
        fmt(summary.get("cpu_us_per_request")),
        fmt(summary.get("preemptions_per_request"), 2),
        "/".join(f"{c:.0%}" for c in last),
        f"{summary['imbalanced_runs']}/{runs}",
        f"{summary['runs_used']}/{runs}",
        f"{summary['other_cpu']:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def table(summaries: dict[str, Summary]) -> str:
    """The Markdown table docs/performance.md shows."""
    header = (
        "| case | req/s (min-max) | p50 ms | p99 ms | rows/s | vs tidy | vs MLServer "
        "| vs raw ASGI | CPU us/req | preempted /req | worker CPU | imbalanced | runs used "
        "| other CPU |"
    )
    lines = [header, "|" + "---|" * 14]
    lines += [_row(summary, summaries) for summary in summaries.values()]
    return "\n".join(lines)


def cost_table(figures: dict[str, Any]) -> str:
    """Where one /predict request's server CPU goes, from the same run's cases."""
    rows = [
        ("HTTP server (uvicorn, httptools, the event loop): raw whole request", "http_server_us"),
        ("dispatch and prediction (decode, predict, encode): iris-bare - raw", "prediction_us"),
        ("front (request id, body policy, log line, metrics): iris-api - iris-bare", "front_us"),
        ("the service's /predict, in all", "cpu_us_per_request"),
    ]
    lines = ["| part of a /predict request | CPU us |", "|---|---|"]
    lines += [f"| {label} | {fmt(figures.get(key), 1)} |" for label, key in rows]
    return "\n".join(lines)
