"""Scenario 4: a broken artifact stops the server at start, quickly, with the artifact's message.

"Quickly" is a ratio, as in `make bench`: the refusal must take no longer than the raw-ASGI
app (bench/apps/raw_asgi.py, under the service's gunicorn options) takes from process
start to its first answer, measured in the same run. The service refuses a bad artifact
from its metadata and the installed versions alone, before it imports scikit-learn or
unpickles anything (model.artifact.check), so this holds on a slow machine as on a fast one.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from functools import partial
from pathlib import Path

from harness.http import try_request
from harness.servers import RAW_ASGI, baseline_server, service_server
from reliability.outcome import Outcome

RAW_COLD_STARTS = 3
"""Starts of the raw-ASGI app; the median is the bound (one start varies with the load)."""

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


def _answers(port: int) -> bool:
    return try_request(port, "POST", "/", b"{}", timeout=1) == 200


def raw_asgi_cold_start(model_dir: Path, workdir: Path) -> float:
    """Median seconds from starting the raw-ASGI app to its first answer."""
    seconds = []
    for n in range(RAW_COLD_STARTS):
        with baseline_server(f"raw-asgi-{n}", RAW_ASGI, workdir, model_dir) as raw:
            seconds.append(raw.wait_until(partial(_answers, raw.port), timeout=120))
    return statistics.median(seconds)


def bad_artifacts(
    model_dir: Path,
    workdir: Path,
    *,
    kinds: tuple[str, ...] = BAD_ARTIFACTS,
    exit_ratio: float | None = 1.0,
) -> Outcome:
    """Scenario 4: each broken artifact makes the process exit non-zero with the artifact's
    own message, and it never answers ready; unless `exit_ratio` is None, within that many
    times the raw-ASGI app's cold start measured here."""
    from model.artifact import ArtifactError, load

    out = Outcome("4 bad artifact at start", f"{len(kinds)} broken artifacts")
    rows = []
    started = time.perf_counter()
    raw_s = raw_asgi_cold_start(model_dir, workdir) if exit_ratio is not None else None
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
                if time.perf_counter() - server.started_at > 60:  # it never exits: fails below
                    break
                if try_request(server.port, "GET", "/readyz", timeout=0.5) == 200:
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
        if raw_s is not None and exit_ratio is not None:
            out.check(
                f"{kind}: exit within {exit_ratio:g}x the raw-ASGI cold start ({raw_s:.2f} s)",
                exit_s <= exit_ratio * raw_s,
            )
        out.check(f"{kind}: logs the artifact's message", bool(rows[-1]["message_logged"]))
        out.check(f"{kind}: never ready", not ready_seen)
    out.duration_s = time.perf_counter() - started
    out.requests = len(kinds)
    out.failures = sum(1 for r in rows if r["exit_code"] in (0, None) or r["ready_seen"])
    out.figure = "exit " + ", ".join(f"{r['exit_code']} in {r['exit_s']:.2f} s" for r in rows)
    if raw_s is not None:
        out.figure += f" (raw-ASGI cold start {raw_s:.2f} s)"
    out.details = {"artifacts": rows, "raw_asgi_cold_start_s": raw_s}
    return out
