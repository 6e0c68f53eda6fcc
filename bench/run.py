"""The side-by-side benchmark behind `make bench`.

Starts, each on a free loopback port and each with two workers:
  iris-api   our service, `python -m service`, exactly as `make serve` runs it;
  raw-asgi   a bare ASGI app returning constant JSON (the HTTP ceiling);
  tutorial   FastAPI, one-row pandas DataFrame, then `predict`;
  tidy       FastAPI, numpy row, `predict_proba`;
  mlserver   MLServer 1.7 with its scikit-learn runtime on the same model file
             (from .venv-bench; its own server, as its users run it).
The three baselines run under gunicorn with the service's settings (workers, keep-alive,
timeouts). Then wrk drives every case in interleaved rounds (warm-up, then a fixed
duration, 32 keep-alive connections) while per-worker CPU is read from /proc, and the
medians go into a table and a JSON file under bench/results/.

Environment overrides: BENCH_DURATION (s, default 5), BENCH_WARMUP (s, 2), BENCH_ROUNDS (4),
BENCH_CONNECTIONS (32), BENCH_THREADS (wrk threads, 2), BENCH_BATCH_ROWS (100),
BENCH_COLD_STARTS (3), BENCH_MLSERVER_WORKERS (MLServer parallel_workers, 0 = infer in the
server process, its fastest setting here), BENCH_SKIP (comma-separated server names),
BENCH_PROFILE (seconds of py-spy on one service worker after the rounds, 0 = off),
BENCH_MAX_OTHER_CPU (cores of other work above which a run is left out of the medians,
0.25), BENCH_RESULTS (directory for the JSON, default bench/results).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import procs
from bench.wrk import WrkResult, run_wrk, wrk_binary

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO_ROOT / ".venv-bench"

# The targets the service has to meet, as (label, key in `figures`, comparison, bound).
TARGETS: list[tuple[str, str, str, float]] = [
    ("single-row req/s >= 2x tidy FastAPI", "ratio_vs_tidy", ">=", 2.0),
    ("single-row req/s >= 8x MLServer", "ratio_vs_mlserver", ">=", 8.0),
    ("single-row req/s >= 1/3 of raw ASGI", "ratio_vs_raw_asgi", ">=", 1 / 3),
    ("single-row p99 <= 10 ms at 32 connections", "p99_ms", "<=", 10.0),
    ("batch rows/s >= 500,000 (100-row requests)", "batch_rows_per_s", ">=", 500_000.0),
    ("cold start <= 1.5 s (start -> first prediction)", "cold_start_s", "<=", 1.5),
]


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    return float(value) if value.strip() else default


def env_int(name: str, default: int) -> int:
    return int(env_float(name, default))


@dataclass
class Config:
    """Knobs of one benchmark run, from BENCH_* variables."""

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
    skip: list[str] = field(
        default_factory=lambda: [
            s.strip() for s in os.environ.get("BENCH_SKIP", "").split(",") if s.strip()
        ]
    )
    results: Path = field(
        default_factory=lambda: Path(os.environ.get("BENCH_RESULTS", REPO_ROOT / "bench/results"))
    )


@dataclass
class Case:
    """One thing wrk measures: a server, a path and a body of `rows` rows."""

    name: str
    server: str
    path: str
    body: bytes
    rows: int
    # Checks one response before measuring, so every figure counts correct answers.
    verify: Callable[[bytes], None] | None = None
    body_file: Path | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


# --- inputs -----------------------------------------------------------------------------


def sample_rows(count: int) -> list[list[float]]:
    """`count` rows of data/v2 (cycled), so every request carries real measurements."""
    with (REPO_ROOT / "data/v2/data.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [
            [float(r[k]) for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")]
            for r in reader
        ]
    return [rows[(i * 7) % len(rows)] for i in range(count)]


def measurement(row: list[float]) -> dict[str, float]:
    keys = ("sepal_length", "sepal_width", "petal_length", "petal_width")
    return dict(zip(keys, row, strict=True))


def v2_body(rows: list[list[float]]) -> bytes:
    tensor = {
        "name": "input-0",
        "shape": [len(rows), 4],
        "datatype": "FP32",
        "data": [x for row in rows for x in row],
    }
    return json.dumps({"inputs": [tensor]}).encode()


# --- servers ----------------------------------------------------------------------------


def gunicorn_argv(app: str) -> list[str]:
    """A baseline app under gunicorn with the service's own options (bench/serve.py)."""
    return [sys.executable, "-m", "bench.serve", app]


def mlserver_dir(workdir: Path, model_dir: Path, port: int, workers: int) -> Path:
    """An MLServer repository: settings.json and iris/model-settings.json next to the joblib."""
    root = workdir / "mlserver"
    (root / "iris").mkdir(parents=True)
    shutil.copy(model_dir / "model.joblib", root / "iris" / "model.joblib")
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": procs.free_port(),
        "metrics_port": procs.free_port(),
        "parallel_workers": workers,
        "debug": False,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }
    (root / "iris" / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return root


def build_servers(cfg: Config, workdir: Path, model_dir: Path) -> dict[str, procs.Server]:
    env = {"IRIS_MODEL_DIR": str(model_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    servers: dict[str, procs.Server] = {}

    def add(name: str, argv: Callable[[int], list[str]], extra: dict[str, str]) -> None:
        if name in cfg.skip:
            return
        port = procs.free_port()
        servers[name] = procs.Server(
            name=name,
            argv=argv(port),
            port=port,
            env={**env, **extra, "IRIS_PORT": str(port)},
            cwd=REPO_ROOT,
            log_path=workdir / f"{name}.log",
        )

    # The service runs with its production logging (a JSON line per request, to a file
    # here as to a container log); the baselines log no requests at all.
    service_env = {"IRIS_METRICS_DIR": str(workdir / "metrics")}
    add("iris-api", lambda port: [sys.executable, "-m", "service"], service_env)
    add("raw-asgi", lambda _: gunicorn_argv("bench.apps.raw_asgi:app"), {})
    add("tutorial", lambda _: gunicorn_argv("bench.apps.tutorial:app"), {})
    add("tidy", lambda _: gunicorn_argv("bench.apps.tidy:app"), {})
    if "mlserver" not in cfg.skip:
        port = procs.free_port()
        repo = mlserver_dir(workdir, model_dir, port, cfg.mlserver_workers)
        servers["mlserver"] = procs.Server(
            name="mlserver",
            argv=[str(BENCH_VENV / "bin" / "mlserver"), "start", str(repo)],
            port=port,
            env={"PYTHONDONTWRITEBYTECODE": "1"},
            cwd=repo,
            log_path=workdir / "mlserver.log",
        )
    return servers


# --- cases ------------------------------------------------------------------------------


def build_cases(cfg: Config, estimator: Any) -> list[Case]:
    import numpy as np

    from model.artifact import CLASS_NAMES

    single = sample_rows(1)
    batch = sample_rows(cfg.batch_rows)
    want_single = [int(x) for x in estimator.predict(np.asarray(single))]
    want_batch = [int(x) for x in estimator.predict(np.asarray(batch))]
    names_single = [CLASS_NAMES[i] for i in want_single]
    names_batch = [CLASS_NAMES[i] for i in want_batch]

    def species_in(payload: Any) -> list[str]:
        """Every species label in a response, in order, whatever the nesting."""
        found: list[str] = []
        if isinstance(payload, dict):
            for key, value in payload.items():
                if key in ("species", "label") and isinstance(value, str):
                    found.append(value)
                else:
                    found.extend(species_in(value))
        elif isinstance(payload, list):
            for item in payload:
                if isinstance(item, str) and item in CLASS_NAMES:
                    found.append(item)
                else:
                    found.extend(species_in(item))
        return found

    def expect_species(expected: list[str]) -> Callable[[bytes], None]:
        def check(raw: bytes) -> None:
            got = species_in(json.loads(raw))
            if got != expected:
                raise AssertionError(f"expected species {expected[:5]}..., got {got[:5]}...")

        return check

    def expect_mlserver(expected: list[int]) -> Callable[[bytes], None]:
        def check(raw: bytes) -> None:
            outputs = json.loads(raw)["outputs"]
            got = [int(x) for x in outputs[0]["data"]]
            if got != expected:
                raise AssertionError(f"expected classes {expected[:5]}..., got {got[:5]}...")

        return check

    single_json = json.dumps(measurement(single[0])).encode()
    batch_json = json.dumps({"instances": [measurement(r) for r in batch]}).encode()
    n = cfg.batch_rows
    return [
        Case(
            "iris-api /predict",
            "iris-api",
            "/predict",
            single_json,
            1,
            expect_species(names_single),
        ),
        Case(
            "iris-api v2 infer [1,4]",
            "iris-api",
            "/v2/models/iris/infer",
            v2_body(single),
            1,
            expect_species(names_single),
        ),
        Case("raw-asgi (ceiling)", "raw-asgi", "/predict", single_json, 1),
        Case(
            "tutorial FastAPI", "tutorial", "/predict", single_json, 1, expect_species(names_single)
        ),
        Case("tidy FastAPI", "tidy", "/predict", single_json, 1, expect_species(names_single)),
        Case(
            "mlserver v2 infer [1,4]",
            "mlserver",
            "/v2/models/iris/infer",
            v2_body(single),
            1,
            expect_mlserver(want_single),
        ),
        Case(
            f"iris-api /predict/batch x{n}",
            "iris-api",
            "/predict/batch",
            batch_json,
            n,
            expect_species(names_batch),
        ),
        Case(
            f"iris-api v2 infer [{n},4]",
            "iris-api",
            "/v2/models/iris/infer",
            v2_body(batch),
            n,
            expect_species(names_batch),
        ),
        Case(
            f"mlserver v2 infer [{n},4]",
            "mlserver",
            "/v2/models/iris/infer",
            v2_body(batch),
            n,
            expect_mlserver(want_batch),
        ),
    ]


# --- measuring --------------------------------------------------------------------------


def worker_cpu(server: procs.Server) -> dict[int, float]:
    """CPU seconds of every serving process (gunicorn's workers, or MLServer's processes)."""
    return procs.per_process([server.pid, *procs.descendants(server.pid)], procs.cpu_seconds)


def busy_cpu_seconds() -> tuple[float, float]:
    """CPU seconds all cores have spent not idle since boot, and of those in interrupts
    (mostly the loopback network's softirqs), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    interrupts = fields[5] + fields[6]  # irq + softirq
    return (sum(fields[:8]) - idle) / procs.CLOCK_TICKS, interrupts / procs.CLOCK_TICKS


def measure(case: Case, server: procs.Server, cfg: Config) -> dict[str, Any]:
    url = f"http://127.0.0.1:{server.port}{case.path}"
    assert case.body_file is not None
    if cfg.warmup > 0:
        run_wrk(url, case.body_file, cfg.warmup, cfg.connections, cfg.threads)
    before = worker_cpu(server)
    busy_before = busy_cpu_seconds()
    result: WrkResult = run_wrk(url, case.body_file, cfg.duration, cfg.connections, cfg.threads)
    busy_after = busy_cpu_seconds()
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
    workers = [round(s, 3) for s in shares]
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
        "worker_cpu": workers,
        "worker_balance": round(balance, 3),
        "client_cpu": round(result.client_cpu_s / result.duration_s, 3),
        "other_cpu": round(max(other, 0.0), 3),
        "interrupt_cpu": round(interrupts / result.duration_s, 3),
    }


def summarise(case: Case, max_other_cpu: float) -> dict[str, Any]:
    """Medians over the case's runs, leaving out runs disturbed by other work on the machine
    (more than `max_other_cpu` cores busy with other processes) when a quiet run exists."""
    quiet = [r for r in case.runs if r["other_cpu"] <= max_other_cpu]
    used = quiet or case.runs
    med = {
        key: statistics.median(r[key] for r in used)
        for key in ("rps", "rows_per_s", "p50_ms", "p90_ms", "p99_ms")
    }
    runs = case.runs
    return {
        "name": case.name,
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


def cold_start(server: procs.Server, case: Case) -> float:
    """Seconds from process start to the first correct answer to `case`."""

    def answered() -> bool:
        try:
            status, body = procs.request(server.port, "POST", case.path, case.body, timeout=2)
        except OSError:
            return False
        if status != 200:
            return False
        if case.verify:
            case.verify(body)
        return True

    return server.wait_until(answered, timeout=120, interval=0.005)


def pandas_loaded(pid: int) -> bool:
    """True if the process has mapped pandas' compiled modules, i.e. imported pandas."""
    try:
        return "/pandas/" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


# --- reporting --------------------------------------------------------------------------


def machine() -> dict[str, Any]:
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


def mlserver_batch_case(summaries: dict[str, dict[str, Any]]) -> str:
    """Name of the MLServer batch case, or "" when it did not run."""
    for name, summary in summaries.items():
        if summary["server"] == "mlserver" and summary["rows_per_request"] > 1:
            return name
    return ""


def figures_from(summaries: dict[str, dict[str, Any]], cold: dict[str, float]) -> dict[str, Any]:
    def rps(name: str) -> float | None:
        return summaries[name]["rps"] if name in summaries else None

    ours = rps("iris-api /predict")
    figures: dict[str, Any] = {"rps": ours}
    for key, name in (
        ("ratio_vs_tidy", "tidy FastAPI"),
        ("ratio_vs_tutorial", "tutorial FastAPI"),
        ("ratio_vs_mlserver", "mlserver v2 infer [1,4]"),
        ("ratio_vs_raw_asgi", "raw-asgi (ceiling)"),
    ):
        base = rps(name)
        figures[key] = round(ours / base, 3) if ours and base else None
    if "iris-api /predict" in summaries:
        figures["p99_ms"] = summaries["iris-api /predict"]["p99_ms"]
    batch = [s for s in summaries.values() if s["path"] == "/predict/batch"]
    figures["batch_rows_per_s"] = batch[0]["rows_per_s"] if batch else None
    ml_batch = mlserver_batch_case(summaries)
    if batch and ml_batch:
        figures["batch_ratio_vs_mlserver"] = round(
            batch[0]["rows_per_s"] / summaries[ml_batch]["rows_per_s"], 3
        )
    figures["cold_start_s"] = cold.get("iris-api")
    return figures


def check_targets(figures: dict[str, Any]) -> list[dict[str, Any]]:
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


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(summaries: dict[str, dict[str, Any]]) -> str:
    def ratio(s: dict[str, Any], base: str) -> str:
        other = summaries.get(base)
        if not other:
            return "-"
        return f"{s['rows_per_s'] / other['rows_per_s']:.2f}x"

    single_ml = "mlserver v2 infer [1,4]"
    batch_ml = mlserver_batch_case(summaries)
    header = (
        "| case | req/s (min-max) | p50 ms | p99 ms | rows/s | vs tidy | vs MLServer "
        "| vs raw ASGI | worker CPU | imbalanced | runs used | other CPU |"
    )
    lines = [header, "|" + "---|" * 12]
    for name, s in summaries.items():
        last = s["runs"][-1]["worker_cpu"] if s["runs"] else []
        ml = batch_ml if s["rows_per_request"] > 1 else single_ml
        lines.append(
            f"| {name} | {fmt(s['rps'])} ({fmt(s['rps_min'])}-{fmt(s['rps_max'])}) "
            f"| {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {fmt(s['rows_per_s'])} "
            f"| {ratio(s, 'tidy FastAPI') if s['rows_per_request'] == 1 else '-'} "
            f"| {ratio(s, ml)} "
            f"| {ratio(s, 'raw-asgi (ceiling)') if s['rows_per_request'] == 1 else '-'} "
            f"| {'/'.join(f'{c:.0%}' for c in last)} | {s['imbalanced_runs']}/{len(s['runs'])} "
            f"| {s['runs_used']}/{len(s['runs'])} | {s['other_cpu']:.2f} |"
        )
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------


def profile_worker(server: procs.Server, case: Case, cfg: Config, out: Path) -> list[str]:
    """py-spy on one service worker while wrk drives `case`; returns the top functions."""
    py_spy = BENCH_VENV / "bin" / "py-spy"
    worker = server.workers()[0]
    raw = out.with_suffix(".txt")
    spy = subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(worker),
            "--duration",
            f"{int(cfg.profile)}",
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert case.body_file is not None
    run_wrk(
        f"http://127.0.0.1:{server.port}{case.path}",
        case.body_file,
        cfg.profile + 1,
        cfg.connections,
        cfg.threads,
    )
    spy.wait(timeout=cfg.profile + 30)
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
    top = sorted(own.items(), key=lambda kv: -kv[1])[:20]
    report = [
        f"py-spy on worker {worker} under {case.name}, {total} samples; "
        "share of samples in the function itself (and in it or below):"
    ]
    report += [
        f"  {100 * n / total:5.1f}% ({100 * inclusive[f] / total:5.1f}%)  {f}" for f, n in top
    ]
    return report


def main() -> int:
    cfg = Config()
    try:
        wrk_binary()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 2
    if "mlserver" not in cfg.skip and not (BENCH_VENV / "bin" / "mlserver").exists():
        print(
            "no .venv-bench: run `make bench` (it creates it) or set BENCH_SKIP=mlserver",
            file=sys.stderr,
        )
        return 2

    sys.path.insert(0, str(REPO_ROOT))
    from model.artifact import load

    model_dir = Path(os.environ.get("IRIS_MODEL_DIR", REPO_ROOT / "artifacts/model")).resolve()
    artifact = load(model_dir)
    started = time.time()
    load_before = [round(x, 2) for x in os.getloadavg()]
    if load_before[0] > 0.5:
        print(
            f"note: load average {load_before[0]:.2f} before the run; other work on this "
            "machine lowers every figure (see the 'other CPU' column)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="iris-bench-"))
    (workdir / "metrics").mkdir()
    servers = build_servers(cfg, workdir, model_dir)
    cases = [c for c in build_cases(cfg, artifact.estimator) if c.server in servers]
    for i, case in enumerate(cases):
        case.body_file = workdir / f"body-{i}.json"
        case.body_file.write_bytes(case.body)
    first_case = {c.server: c for c in reversed(cases)}
    cold: dict[str, float] = {}
    extra_cold: list[float] = []
    try:
        # One server at a time, so each cold start is measured on an idle machine.
        for name, server in servers.items():
            server.start()
            cold[name] = round(cold_start(server, first_case[name]), 3)
            print(f"started {name:9s} on :{server.port}, first prediction after {cold[name]:.2f} s")
        service = servers.get("iris-api")
        if service is not None:
            for _ in range(max(cfg.cold_starts - 1, 0)):
                port = procs.free_port()
                env = {**service.env, "IRIS_PORT": str(port)}
                again = procs.Server(
                    "iris-api", service.argv, port, env, REPO_ROOT, workdir / "cold.log"
                )
                again.start()
                try:
                    extra_cold.append(cold_start(again, first_case["iris-api"]))
                finally:
                    again.stop()
            first_cold = cold["iris-api"]
            extra_cold.insert(0, first_cold)
            cold["iris-api"] = round(statistics.median(extra_cold), 3)
        for case in cases:
            status, body = procs.request(servers[case.server].port, "POST", case.path, case.body)
            if status != 200:
                raise RuntimeError(f"{case.name}: status {status}: {body[:300]!r}")
            if case.verify:
                case.verify(body)

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
                    f"[{done:2d}/{total}] round {round_no + 1} {case.name:28s} "
                    f"{run['rps']:9,.0f} req/s  p99 {run['p99_ms']:7.2f} ms  "
                    f"workers {'/'.join(f'{c:.0%}' for c in run['worker_cpu'])}  "
                    f"wrk {run['client_cpu']:.0%}  other {run['other_cpu']:.2f} cores",
                    flush=True,
                )

        memory = {
            name: [round(procs.rss_bytes(pid) / 2**20, 1) for pid in server.workers()]
            for name, server in servers.items()
        }
        no_pandas = not any(pandas_loaded(pid) for pid in service.workers()) if service else None
        profile: list[str] = []
        if cfg.profile > 0 and service is not None:
            for n, case in enumerate(
                c
                for c in cases
                if c.path in ("/predict", "/predict/batch") and c.server == "iris-api"
            ):
                profile += profile_worker(service, case, cfg, workdir / f"profile-{n}")
    finally:
        for server in servers.values():
            server.stop()

    summaries = {case.name: summarise(case, cfg.max_other_cpu) for case in cases}
    figures = figures_from(summaries, cold)
    verdicts = check_targets(figures)
    now = datetime.now(UTC)
    report = {
        "date": now.isoformat(timespec="seconds"),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": "make bench",
        "machine": machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "wall_s": round(time.time() - started, 1),
        "cold_start_s": cold,
        "service_cold_starts_s": [round(x, 3) for x in extra_cold],
        "rss_mib_per_worker": memory,
        "pandas_on_serving_path": None if no_pandas is None else not no_pandas,
        "cases": summaries,
        "figures": figures,
        "targets": verdicts,
        "profile": profile,
    }
    cfg.results.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    # Results are committed: name this machine's directories by role, not by path.
    text = text.replace(str(REPO_ROOT), ".").replace(tempfile.gettempdir(), "$TMPDIR")
    (cfg.results / f"{now.strftime('%Y%m%dT%H%M%SZ')}.json").write_text(text)
    (cfg.results / "latest.json").write_text(text)
    shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(table(summaries))
    print()
    print("cold start (s): " + ", ".join(f"{k} {v:.2f}" for k, v in cold.items()))
    print("RSS per worker (MiB): " + "; ".join(f"{k} {v}" for k, v in memory.items()))
    if no_pandas is not None:
        print(f"pandas imported by a service worker: {'yes' if not no_pandas else 'no'}")
    print()
    for v in verdicts:
        value = v["value"]
        shown = "-" if value is None else f"{value:,.3f}"
        print(f"  [{v['verdict']:>12s}] {v['target']}: {shown}")
    for line in profile:
        print(line)
    print(f"\nresults: {cfg.results / 'latest.json'} (wall {report['wall_s']} s)")
    return 1 if any(v["verdict"] != "met" for v in verdicts) else 0
