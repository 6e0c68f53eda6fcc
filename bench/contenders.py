"""The servers the benchmark compares, each on a free loopback port with two workers.

  iris-api   our service, `python -m service`, exactly as `make serve` runs it;
  iris-bare  the service's routes, data plane and model without its front (what the
             front costs a request is the difference);
  raw-asgi   a bare ASGI app returning constant JSON (the HTTP ceiling of an ASGI request);
  raw-whole  the same answer for a request that arrived whole, without ASGI, the path the
             service's own routes take (service.protocol);
  tutorial   FastAPI, one-row pandas DataFrame, then `predict`;
  tidy       FastAPI, numpy row, `predict_proba`;
  mlserver   MLServer 1.7 with its scikit-learn runtime on the same model file
             (from .venv-bench; its own server, as its users run it).

The three baselines run under gunicorn with the service's settings (bench/serve.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.config import BENCH_VENV, Config
from harness.ports import free_port
from harness.servers import RAW_ASGI, Server, baseline_server, service_server

BASELINES = {
    "iris-bare": "bench.apps.bare:app",
    "raw-asgi": RAW_ASGI,
    "raw-whole": "bench.apps.raw_whole:app",
    "tutorial": "bench.apps.tutorial:app",
    "tidy": "bench.apps.tidy:app",
}


def mlserver_dir(workdir: Path, model_dir: Path, port: int, workers: int) -> Path:
    """An MLServer repository: settings.json and iris/model-settings.json next to the joblib."""
    root = workdir / "mlserver"
    (root / "iris").mkdir(parents=True)
    shutil.copy(model_dir / "model.joblib", root / "iris" / "model.joblib")
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
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


def mlserver(cfg: Config, workdir: Path, model_dir: Path) -> Server:
    """MLServer as its users start it, on the same model file."""
    port = free_port()
    repo = mlserver_dir(workdir, model_dir, port, cfg.mlserver_workers)
    return Server(
        name="mlserver",
        argv=[str(BENCH_VENV / "bin" / "mlserver"), "start", str(repo)],
        port=port,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        cwd=repo,
        log_path=workdir / "mlserver.log",
    )


def build_servers(cfg: Config, workdir: Path, model_dir: Path) -> dict[str, Server]:
    """Every server not in BENCH_SKIP, not started yet, by name."""
    # The service runs with its production logging (a JSON line per request, to a file
    # here as to a container log); the baselines log no requests at all.
    servers: dict[str, Server] = {"iris-api": service_server(model_dir, workdir)}
    for name, target in BASELINES.items():
        servers[name] = baseline_server(name, target, workdir, model_dir)
    if "mlserver" not in cfg.skip:
        servers["mlserver"] = mlserver(cfg, workdir, model_dir)
    return {name: server for name, server in servers.items() if name not in cfg.skip}
