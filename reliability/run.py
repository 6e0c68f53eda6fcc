"""`make reliability`: the long form of every scenario, one table, a JSON record.

Loopback only, every loop bounded. Environment: IRIS_MODEL_DIR (the artifact, default
artifacts/model), RELIABILITY_ONLY (comma-separated scenario numbers, e.g. "1,3"),
RELIABILITY_RESULTS (directory for the JSON and its chart, default reliability/results).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from harness.servers import REPO_ROOT
from reliability.artifacts import bad_artifacts
from reliability.chart import draw
from reliability.gitops_safety import gitops_state_safety
from reliability.hostile import hostile_input
from reliability.outcome import Outcome
from reliability.serving import graceful_shutdown, shutdown_budget, sustained_load, worker_crash


def scenarios(model_dir: Path) -> dict[str, Callable[[Path], Outcome]]:
    """The long forms, by scenario number."""
    return {
        "1": lambda wd: sustained_load(model_dir, wd, connections=64, duration_s=60),
        "2": lambda wd: graceful_shutdown(model_dir, wd, connections=64, drain_s=3),
        "3": lambda wd: worker_crash(model_dir, wd, connections=64, duration_s=20),
        "4": lambda wd: bad_artifacts(model_dir, wd),
        "5": lambda wd: hostile_input(
            model_dir,
            wd,
            schemathesis_examples=300,
            swarm_requests=10_000,
            swarm_concurrency=1_000,
            slow_connections=20,
            slow_trickle_s=40,
            # A client that trickles its body must not hold a connection (and memory) forever.
            slow_bound_s=35,
        ),
        "6": lambda wd: gitops_state_safety(wd, kills=40, concurrent_rounds=3),
    }


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| scenario | load | duration | requests | failures | figure | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.scenario} | {o.load} | {o.duration_s:.1f} s | {o.requests:,} | {o.failures:,} "
            f"| {o.figure} | {o.verdict} |"
        )
    return "\n".join(lines)


def main() -> int:
    model_dir = Path(os.environ.get("IRIS_MODEL_DIR", REPO_ROOT / "artifacts/model")).resolve()
    only = [s.strip() for s in os.environ.get("RELIABILITY_ONLY", "").split(",") if s.strip()]
    results_dir = Path(os.environ.get("RELIABILITY_RESULTS", REPO_ROOT / "reliability/results"))
    started = time.time()
    outcomes: list[Outcome] = []
    for number, scenario in scenarios(model_dir).items():
        if only and number not in only:
            continue
        workdir = Path(tempfile.mkdtemp(prefix=f"iris-reliability-{number}-"))
        print(f"scenario {number} ...", flush=True)
        try:
            outcome = scenario(workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"  {outcome.verdict}: {outcome.figure}", flush=True)
        outcomes.append(outcome)

    budget = shutdown_budget(REPO_ROOT / "deploy/base/deployment.yaml")
    now = datetime.now(UTC)
    report = {
        "date": now.isoformat(timespec="seconds"),
        "command": "make reliability",
        "machine": {
            "nproc": os.cpu_count(),
            "cpu_model": next(
                (
                    line.split(":", 1)[1].strip()
                    for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")
                ),
                "unknown",
            ),
            "python": platform.python_version(),
        },
        "wall_s": round(time.time() - started, 1),
        "shutdown_budget": budget,
        "scenarios": [o.to_dict() for o in outcomes],
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=str) + "\n"
    # Results are committed: name this machine's directories by role, not by path.
    text = text.replace(str(REPO_ROOT), ".").replace(tempfile.gettempdir(), "$TMPDIR")
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    (results_dir / f"{stamp}.json").write_text(text)
    (results_dir / "latest.json").write_text(text)
    # The same record as a picture, beside it (docs/reliability.md shows latest.png).
    draw(report, results_dir / f"{stamp}.png")
    shutil.copyfile(results_dir / f"{stamp}.png", results_dir / "latest.png")
    print()
    print(table(outcomes))
    print(
        f"\nshutdown budget (deploy/base/deployment.yaml): preStop {budget['pre_stop_s']:g} s + "
        f"drain {budget['drain_s']:g} s + graceful timeout {budget['graceful_timeout_s']:g} s "
        f"< terminationGracePeriodSeconds {budget['grace_period_s']:g} s"
    )
    print(
        f"results: {results_dir / 'latest.json'}, chart {results_dir / 'latest.png'} "
        f"(wall {report['wall_s']} s)"
    )
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
