"""Start the real service (`python -m service`, i.e. gunicorn) for a scenario, and the
requests the scenarios send."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from bench import procs
from reliability.load import Request

REPO_ROOT = Path(__file__).resolve().parent.parent

ROWS = [
    [5.1, 3.5, 1.4, 0.2],
    [6.2, 2.9, 4.3, 1.3],
    [7.7, 3.0, 6.1, 2.3],
    [5.8, 2.7, 5.1, 1.9],
]
KEYS = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def measurement(row: list[float]) -> dict[str, float]:
    return dict(zip(KEYS, row, strict=True))


PREDICT = Request("POST", "/predict", json.dumps(measurement(ROWS[0])).encode())
BATCH = Request(
    "POST",
    "/predict/batch",
    json.dumps({"instances": [measurement(r) for r in ROWS * 5]}).encode(),
)
V2_INFER = Request(
    "POST",
    "/v2/models/iris/infer",
    json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [len(ROWS), 4],
                    "datatype": "FP32",
                    "data": [x for r in ROWS for x in r],
                }
            ]
        }
    ).encode(),
)
READYZ = Request("GET", "/readyz")
LIVEZ = Request("GET", "/livez")
# What a busy pod sees: mostly single predictions, some batches and v2 calls...
WORK = [PREDICT, PREDICT, BATCH, PREDICT, V2_INFER, PREDICT]
# ...and the kubelet's probes.
MIX = [*WORK, READYZ]


def service_server(
    model_dir: Path,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    name: str = "iris-api",
    cwd: Path | None = None,
    argv_prefix: list[str] | None = None,
) -> procs.Server:
    """A Server for `python -m service` on a free port, logging to a file in `workdir`."""
    port = procs.free_port()
    metrics = workdir / f"metrics-{name}-{port}"
    metrics.mkdir(parents=True, exist_ok=True)
    return procs.Server(
        name=name,
        argv=[*(argv_prefix or []), sys.executable, "-m", "service"],
        port=port,
        env={
            "IRIS_MODEL_DIR": str(model_dir),
            "IRIS_PORT": str(port),
            "IRIS_HOST": "127.0.0.1",
            "IRIS_METRICS_DIR": str(metrics),
            "IRIS_LOG_FORMAT": "json",
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        },
        cwd=cwd or REPO_ROOT,
        log_path=workdir / f"{name}-{port}.log",
    )


def wait_ready(server: procs.Server, timeout: float = 30.0) -> float:
    """Wait until every worker has booted and /readyz answers 200; returns seconds since start."""
    workers = int(server.env.get("IRIS_WORKERS", os.environ.get("IRIS_WORKERS", "2")))

    def ready() -> bool:
        if procs.try_request(server.port, "GET", "/readyz") != 200:
            return False
        return len(server.workers()) >= workers

    return server.wait_until(ready, timeout=timeout, interval=0.02)
