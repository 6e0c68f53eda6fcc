"""`make serve` serves the artifact the user asked for: IRIS_MODEL_DIR, or one trained on DATA."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _dry_run(*args: str, **env: str) -> list[str]:
    environment = {key: value for key, value in os.environ.items() if key != "IRIS_MODEL_DIR"}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=REPO_ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    return [line for line in lines if "-m service" in line or "-m model.train" in line]


def test_serve_with_iris_model_dir_serves_that_directory_and_trains_nothing() -> None:
    for commands in (
        _dry_run("serve", IRIS_MODEL_DIR="elsewhere/model"),
        _dry_run("serve", "IRIS_MODEL_DIR=elsewhere/model"),
    ):
        assert commands == ['IRIS_MODEL_DIR="elsewhere/model" .venv/bin/python -m service']


def test_serve_without_iris_model_dir_retrains_when_data_differs_then_serves_artifacts() -> None:
    commands = _dry_run("serve", "DATA=data/v1/data.csv")
    train = ".venv/bin/python -m model.train --data data/v1/data.csv --out artifacts --if-changed"
    assert train in commands
    assert commands[-1] == "IRIS_MODEL_DIR=artifacts/model .venv/bin/python -m service"
