"""Training is deterministic, reports its quality, and refuses to ship a bad model."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
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


def _rows_of(repo_root: Path, keep: Callable[[str, int], bool]) -> str:
    """data/v2 with only the rows for which keep(species, index within species) holds."""
    lines = (repo_root / "data" / "v2" / "data.csv").read_text().splitlines()
    seen: dict[str, int] = {}
    kept = [lines[0]]
    for line in lines[1:]:
        species = line.rsplit(",", 1)[1]
        if keep(species, seen.get(species, 0)):
            kept.append(line)
        seen[species] = seen.get(species, 0) + 1
    return "\n".join(kept) + "\n"


@pytest.mark.parametrize(
    ("keep", "fragments"),
    [
        pytest.param(
            lambda species, _: species != "virginica",
            ["no rows of species virginica", "add rows of it to the data"],
            id="missing-species",
        ),
        pytest.param(
            lambda _, index: index == 0,  # one row of each species: 3 rows in all
            ["too few rows to train (setosa 1, versicolor 1, virginica 1)", "at least 10 rows"],
            id="three-rows",
        ),
        pytest.param(
            lambda species, index: species != "setosa" or index < 4,
            ["too few rows to train (setosa 4, versicolor 50, virginica 50)"],
            id="one-species-short",
        ),
    ],
)
def test_data_the_model_cannot_learn_from_is_refused_in_one_line_and_writes_nothing(
    tmp_path: Path,
    repo_root: Path,
    capsys: pytest.CaptureFixture[str],
    keep: Callable[[str, int], bool],
    fragments: list[str],
) -> None:
    data = tmp_path / "data.csv"
    data.write_text(_rows_of(repo_root, keep))

    assert main(["--data", str(data), "--out", str(tmp_path / "out")]) == 1

    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"error: {data}: ")
    for fragment in fragments:
        assert fragment in error
    assert "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_if_changed_keeps_an_artifact_trained_on_the_same_bytes_and_retrains_on_other_data(
    tmp_path: Path, repo_root: Path, trained_output_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "artifacts"
    shutil.copytree(trained_output_dir / "model", out / "model")
    copy = tmp_path / "same-bytes.csv"  # another path, the same data: nothing to do
    shutil.copyfile(repo_root / "data" / "v2" / "data.csv", copy)
    before = (out / "model" / "metadata.json").read_bytes()

    assert main(["--data", str(copy), "--out", str(out), "--if-changed"]) == 0
    kept = capsys.readouterr().out
    assert "is current: trained on" in kept
    assert (out / "model" / "metadata.json").read_bytes() == before

    v1 = repo_root / "data" / "v1" / "data.csv"
    assert main(["--data", str(v1), "--out", str(out), "--if-changed"]) == 0
    assert load(out / "model").metadata.data_path == str(v1)
    assert "is current" not in capsys.readouterr().out
