"""The side-by-side benchmark behind `make bench`.

Starts every server of bench/contenders.py, one at a time so each cold start is measured
on an idle machine, checks each case's answer against the estimator, then drives every
case with wrk in interleaved rounds (warm-up, then a fixed duration, 32 keep-alive
connections) while per-worker CPU is read from /proc. The medians go into a table and a
JSON file under bench/results/.

Environment overrides: BENCH_DURATION (s, default 5), BENCH_WARMUP (s, 2), BENCH_ROUNDS (4),
BENCH_CONNECTIONS (32), BENCH_THREADS (wrk threads, 2), BENCH_BATCH_ROWS (100),
BENCH_COLD_STARTS (3), BENCH_MLSERVER_WORKERS (MLServer parallel_workers, 0 = infer in the
server process, its fastest setting here), BENCH_SKIP (comma-separated server names),
BENCH_PROFILE (seconds of py-spy on one service worker after the rounds, 0 = off),
BENCH_MAX_OTHER_CPU (cores of other work above which a run is left out of the medians,
0.25), BENCH_CLIENT_SCHED (batch: wrk as SCHED_BATCH, the default; normal: as any process),
BENCH_RESULTS (directory for the JSON, default bench/results).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import chart, report
from bench.cases import Case, build_cases
from bench.config import BENCH_VENV, REPO_ROOT, Config
from bench.contenders import build_servers
from bench.measure import answers, cold_start, measure, pandas_loaded, profile_worker
from bench.wrk import WrkMissingError, scheduling_prefix, wrk_binary
from harness import procs
from harness.servers import Server, service_server


@dataclass
class Observations:
    """Everything measured besides the wrk rounds."""

    cold: dict[str, float] = field(default_factory=dict)
    service_cold_starts: list[float] = field(default_factory=list)
    memory: dict[str, list[float]] = field(default_factory=dict)
    no_pandas: bool | None = None
    profile: list[str] = field(default_factory=list)


def preflight(cfg: Config) -> str | None:
    """Why the benchmark cannot run here, or None."""
    try:
        wrk_binary()
        scheduling_prefix(cfg.client_sched)
    except WrkMissingError as exc:
        return str(exc)
    if "mlserver" not in cfg.skip and not (BENCH_VENV / "bin" / "mlserver").exists():
        return "no .venv-bench: run `make bench` (it creates it) or set BENCH_SKIP=mlserver"
    return None


def start_all(
    servers: dict[str, Server], cases: list[Case], cfg: Config, workdir: Path, model_dir: Path
) -> Observations:
    """Start each server alone and time its first correct answer; the service several times."""
    seen = Observations()
    first_case = {c.server: c for c in reversed(cases)}
    for name, server in servers.items():
        server.start()
        seen.cold[name] = round(cold_start(server, first_case[name]), 3)
        print(
            f"started {name:9s} on :{server.port}, first prediction after {seen.cold[name]:.2f} s"
        )
    if "iris-api" in servers:
        seen.service_cold_starts = [seen.cold["iris-api"]]
        for _ in range(max(cfg.cold_starts - 1, 0)):
            with service_server(model_dir, workdir, name="cold") as again:
                seen.service_cold_starts.append(cold_start(again, first_case["iris-api"]))
        seen.cold["iris-api"] = round(statistics.median(seen.service_cold_starts), 3)
    for case in cases:
        if not answers(servers[case.server], case):
            raise RuntimeError(f"{case.label}: no correct answer from {case.server}")
    return seen


def run_rounds(servers: dict[str, Server], cases: list[Case], cfg: Config) -> None:
    """wrk on every case, `cfg.rounds` times, in an order rotated each round."""
    total = len(cases) * cfg.rounds
    done = 0
    for round_no in range(cfg.rounds):
        # Rotate the order each round so no case always follows the same neighbour.
        shift = round_no % len(cases)
        for case in cases[shift:] + cases[:shift]:
            run = measure(case, servers[case.server], cfg)
            case.runs.append(run)
            done += 1
            print(
                f"[{done:2d}/{total}] round {round_no + 1} {case.label:28s} "
                f"{run['rps']:9,.0f} req/s  p99 {run['p99_ms']:7.2f} ms  "
                f"workers {'/'.join(f'{c:.0%}' for c in run['worker_cpu'])}  "
                f"wrk {run['client_cpu']:.0%}  other {run['other_cpu']:.2f} cores",
                flush=True,
            )


def observe_service(
    servers: dict[str, Server], cases: list[Case], cfg: Config, workdir: Path, seen: Observations
) -> None:
    """Memory per worker of every server; pandas and (if asked) a profile of the service."""
    seen.memory = {
        name: [round(procs.rss_bytes(pid) / 2**20, 1) for pid in server.workers()]
        for name, server in servers.items()
    }
    service = servers.get("iris-api")
    if service is None:
        return
    seen.no_pandas = not any(pandas_loaded(pid) for pid in service.workers())
    if cfg.profile > 0:
        profiled = [c for c in cases if c.key in ("predict", "batch")]
        for n, case in enumerate(profiled):
            seen.profile += profile_worker(service, case, cfg, workdir / f"profile-{n}")


def write_results(results: Path, record: dict[str, Any], stamp: str) -> Path:
    """The record as <stamp>.json and latest.json, and its chart as <stamp>.png and
    latest.png, without this machine's paths."""
    results.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2) + "\n"
    # Results are committed: name this machine's directories by role, not by path.
    text = text.replace(str(REPO_ROOT), ".").replace(tempfile.gettempdir(), "$TMPDIR")
    (results / f"{stamp}.json").write_text(text)
    latest = results / "latest.json"
    latest.write_text(text)
    load = record["load_average_before"][0]
    title = (
        f"make bench {record['date']}, {record['machine']['nproc']} CPUs, load average "
        f"{load:.2f} before; {record['config']['connections']} connections"
    )
    chart.draw(record["cases"], title, results / f"{stamp}.png")
    shutil.copyfile(results / f"{stamp}.png", results / "latest.png")
    return latest


def print_summary(record: dict[str, Any], summaries: dict[str, report.Summary]) -> None:
    """The table, the side figures and each target's verdict."""
    print()
    print(report.table(summaries))
    print()
    print(report.cost_table(record["figures"]))
    print()
    print("cold start (s): " + ", ".join(f"{k} {v:.2f}" for k, v in record["cold_start_s"].items()))
    memory = record["rss_mib_per_worker"]
    print("RSS per worker (MiB): " + "; ".join(f"{k} {v}" for k, v in memory.items()))
    pandas = record["pandas_on_serving_path"]
    if pandas is not None:
        print(f"pandas imported by a service worker: {'yes' if pandas else 'no'}")
    print()
    for verdict in record["targets"]:
        value = verdict["value"]
        shown = "-" if value is None else f"{value:,.3f}"
        print(f"  [{verdict['verdict']:>12s}] {verdict['target']}: {shown}")
    figures = record["figures"]
    if figures.get("ratio_vs_raw_whole") is not None:
        print(
            "  against the raw whole-request app (no ASGI, the path the service's routes take): "
            f"/predict {figures['ratio_vs_raw_whole']:.3f}x, "
            f"batch rows {figures['batch_rows_vs_raw_whole_rps']:.1f}x its req/s"
        )
    for line in record["profile"]:
        print(line)


def main() -> int:
    """Run the benchmark; 0 when every target is met, 1 when one is not, 2 when it cannot run."""
    cfg = Config()
    problem = preflight(cfg)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from model.artifact import load

    model_dir = Path(os.environ.get("IRIS_MODEL_DIR", REPO_ROOT / "artifacts/model")).resolve()
    estimator = load(model_dir).estimator
    started = time.time()
    load_before = [round(x, 2) for x in os.getloadavg()]
    if load_before[0] > 0.5:
        print(
            f"note: load average {load_before[0]:.2f} before the run; other work on this "
            "machine lowers every figure (see the 'other CPU' column)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="iris-bench-"))
    servers = build_servers(cfg, workdir, model_dir)
    cases = [c for c in build_cases(cfg, estimator) if c.server in servers]
    for case in cases:
        case.body_file = workdir / f"body-{case.key}.json"
        case.body_file.write_bytes(case.body)
    try:
        seen = start_all(servers, cases, cfg, workdir, model_dir)
        run_rounds(servers, cases, cfg)
        observe_service(servers, cases, cfg, workdir, seen)
    finally:
        for server in servers.values():
            server.stop()

    summaries = {case.key: report.summarise(case, cfg.max_other_cpu) for case in cases}
    figures = report.figures_from(summaries, seen.cold)
    now = datetime.now(UTC)
    verdicts = report.check_targets(figures)
    record: dict[str, Any] = {
        "date": now.isoformat(timespec="seconds"),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": "make bench",
        "machine": report.machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "wall_s": round(time.time() - started, 1),
        "cold_start_s": seen.cold,
        "service_cold_starts_s": [round(x, 3) for x in seen.service_cold_starts],
        "rss_mib_per_worker": seen.memory,
        "pandas_on_serving_path": None if seen.no_pandas is None else not seen.no_pandas,
        "cases": summaries,
        "figures": figures,
        "targets": verdicts,
        "profile": seen.profile,
    }
    latest = write_results(cfg.results, record, now.strftime("%Y%m%dT%H%M%SZ"))
    shutil.rmtree(workdir, ignore_errors=True)
    print_summary(record, summaries)
    print(f"\nresults: {latest} and {latest.with_suffix('.png')} (wall {record['wall_s']} s)")
    return 1 if any(v["verdict"] != "met" for v in verdicts) else 0
