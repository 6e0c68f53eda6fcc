"""Training is deterministic, reports its quality, and refuses to ship a bad model."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.artifact import load
from model.train import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_training_writes_artifact_metrics_and_confusion_matrix(trained_output_dir: Path) -> None:
    assert sorted(p.name for p in trained_output_dir.iterdir()) == [
        "confusion_matrix.png",
        "metrics.json",
        "model",
    ]
    metrics = json.loads((trained_output_dir / "metrics.json").read_text())
    assert metrics["holdout_accuracy"] >= 0.9
    assert metrics["cv_folds"] == 5
    assert metrics["train_rows"] + metrics["holdout_rows"] == 150
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["holdout_rows"]
    assert (trained_output_dir / "confusion_matrix.png").read_bytes().startswith(PNG_SIGNATURE)


def test_same_data_and_seed_give_identical_predictions_and_metrics(
    tmp_path: Path, repo_root: Path, trained_artifact_dir: Path
) -> None:
    data = repo_root / "data" / "v2" / "data.csv"
    assert main(["--data", str(data), "--out", str(tmp_path)]) == 0
    first, second = load(trained_artifact_dir), load(tmp_path / "model")
    assert first.metadata.metrics == second.metadata.metrics
    assert first.metadata.model_version == second.metadata.model_version
    rows = np.random.default_rng(0).uniform(0, 8, size=(500, 4))
    np.testing.assert_array_equal(
        first.estimator.predict_proba(rows), second.estimator.predict_proba(rows)
    )


def test_other_data_version_gives_another_model_version(
    tmp_path: Path, repo_root: Path, trained_artifact_dir: Path
) -> None:
    assert (
        main(["--data", str(repo_root / "data" / "v1" / "data.csv"), "--out", str(tmp_path)]) == 0
    )
    v1 = load(tmp_path / "model").metadata
    assert v1.model_version != load(trained_artifact_dir).metadata.model_version
    assert v1.data_path.endswith("data/v1/data.csv")


def test_quality_gate_fails_training_on_shuffled_labels_and_writes_no_artifact(
    tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (repo_root / "data" / "v2" / "data.csv").read_text().splitlines()
    header, rows = lines[0], [line.rsplit(",", 1) for line in lines[1:]]
    labels = [label for _, label in rows]
    random.Random(7).shuffle(labels)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text(
        "\n".join([header, *(f"{f},{y}" for (f, _), y in zip(rows, labels, strict=True))]) + "\n"
    )

    code = main(["--data", str(shuffled), "--out", str(tmp_path / "out")])

    assert code == 1
    assert "quality gate failed: holdout accuracy" in capsys.readouterr().err
    assert not (tmp_path / "out" / "model").exists()
    assert (tmp_path / "out" / "metrics.json").exists()  # the report stays, to see why


def test_quality_gate_threshold_comes_from_the_environment(tmp_path: Path, repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "model.train", "--data", "data/v2/data.csv", "--out", str(tmp_path)],
        cwd=repo_root,
        env={"IRIS_MIN_ACCURACY": "0.999", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "is below 0.999" in result.stderr
    assert not (tmp_path / "model").exists()


def test_invalid_data_fails_training_with_the_loader_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("sepal_length,sepal_width,petal_length,petal_width,species\n1,2,3,x,setosa\n")
    assert main(["--data", str(bad), "--out", str(tmp_path / "out")]) == 1
    assert "line 2, column petal_width: 'x' is not a number" in capsys.readouterr().err
