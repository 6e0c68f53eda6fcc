"""`python -m service.smoke` (the PostSync hook's command) against a real gunicorn server."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from harness.servers import ServiceServer
from service.smoke import main

pytestmark = pytest.mark.integration


def copy_artifact(artifact: Path, tmp_path: Path, edit: Any) -> Path:
    """A copy of the artifact whose metadata.json `edit` changed (the server keeps its own)."""
    copy = tmp_path / "model"
    shutil.copytree(artifact, copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    edit(metadata)
    (copy / "metadata.json").write_text(json.dumps(metadata))
    return copy


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_smoke_passes_against_the_service_serving_the_same_artifact(
    server: ServiceServer, trained_artifact_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, server.base_url, "--model-dir", str(trained_artifact_dir))
    assert (code, err) == (0, "")
    classes = json.loads((trained_artifact_dir / "metadata.json").read_text())["class_names"]
    assert out.splitlines() == [
        "ok /readyz",
        out.splitlines()[1],
        *[f"ok /predict {name}" for name in classes],
        "smoke test passed",
    ]
    assert out.splitlines()[1].startswith("ok /version model_version=")


def test_smoke_fails_when_the_service_answers_with_another_model(
    server: ServiceServer,
    trained_artifact_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = copy_artifact(
        trained_artifact_dir, tmp_path, lambda m: m.update(model_version="another-model")
    )
    code, _, err = run(capsys, server.base_url, "--model-dir", str(other))
    assert code == 1
    assert err.startswith("smoke test failed: /version: HTTP 200")
    assert "expected 'another-model'" in err


def test_smoke_fails_when_a_prediction_differs_from_training(
    server: ServiceServer,
    trained_artifact_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def swap_first_reference(metadata: dict[str, Any]) -> None:
        reference = metadata["reference_predictions"][0]
        reference["probabilities"] = list(reversed(reference["probabilities"]))

    edited = copy_artifact(trained_artifact_dir, tmp_path, swap_first_reference)
    code, out, err = run(capsys, server.base_url, "--model-dir", str(edited))
    assert code == 1
    assert "smoke test failed: /predict" in err
    assert "smoke test passed" not in out


def test_smoke_fails_when_nothing_becomes_ready(
    trained_artifact_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = run(
        capsys,
        f"http://127.0.0.1:{port}",
        "--model-dir",
        str(trained_artifact_dir),
        "--wait",
        "0.5",
    )
    assert code == 1
    assert err.startswith("smoke test failed: /readyz: not ready after 0.5 s")


def test_smoke_reports_an_artifact_without_reference_rows(
    tmp_path: Path, trained_artifact_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = copy_artifact(
        trained_artifact_dir, tmp_path, lambda m: m.update(reference_predictions=[])
    )
    code, _, err = run(capsys, "http://127.0.0.1:9", "--model-dir", str(edited))
    assert code == 1
    assert "records no reference predictions" in err
